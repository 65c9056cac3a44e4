"""Statistics over seeds: summaries, paired differences, Holm's correction, the minimum detectable effect, and
the association of two per-run quantities (held-out alignment and the metric).

Every interval is a two-sided 95% Student t interval over seeds: mean +- t(0.975, n-1) * sd / sqrt(n), sd with
n-1 in the denominator. A comparison pairs two conditions by seed (same seed: same initialisation and data
order), so its test is the one-sample t-test of the differences (paired t-test), two-sided.
"""
import math
import warnings

from scipy import stats as st

POWER = 0.8


def describe(values):
    """n, mean, sd, 95% t interval (lo, hi) of a list of numbers; sd and interval are None for n < 2."""
    n = len(values)
    out = {"n": n, "mean": None, "sd": None, "ci": None}
    if n == 0:
        return out
    mean = sum(values) / n
    out["mean"] = mean
    if n >= 2:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = st.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        out.update(sd=sd, ci=[mean - half, mean + half])
    return out


def paired(a, b):
    """Paired comparison of a against b, two dicts {seed: value}, over the seeds both have: the differences
    a - b described, the t statistic and two-sided p of the paired t-test, and the Wilcoxon signed-rank p
    (two-sided; exact for small n without ties; None when every difference is 0 or n < 2)."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    out = describe(diffs)
    out.update(seeds=seeds, t=None, p=None, p_wilcoxon=None)
    n = len(diffs)
    if n < 2:
        return out
    sd = out["sd"]
    if sd == 0:  # every pair differs by the same amount: t is 0 or unbounded (left None, JSON has no inf)
        out["t"] = 0.0 if out["mean"] == 0 else None
        out["p"] = 1.0 if out["mean"] == 0 else 0.0
    else:
        out["t"] = out["mean"] / (sd / math.sqrt(n))
        out["p"] = float(2 * st.t.sf(abs(out["t"]), n - 1))
    if any(d != 0 for d in diffs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about small n; the p it gives is still exact
            out["p_wilcoxon"] = float(st.wilcoxon(diffs).pvalue)
    return out


def holm(pvalues, m=None):
    """Holm's step-down adjustment over a family of ``m`` comparisons (default: the p-values that are not None).
    A None (a planned comparison without a p yet) stays None; with m given, it counts in the family as if its p
    were 1. Sort the p's ascending, multiply the k-th smallest (k = 1..) by m - k + 1, keep the running maximum,
    cap at 1."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(order) if m is None else m
    if m < len(order):
        raise ValueError(f"holm: a family of {m} comparisons cannot hold {len(order)} p-values")
    out = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


def mde(sd, n, m, alpha=0.05, power=POWER):
    """Minimum detectable effect of a paired comparison of n seeds whose differences have sd ``sd``, at the
    given power, two-sided, with alpha divided over the m comparisons (Bonferroni, the strictest of Holm's
    steps): (t(1 - alpha / (2 m), n - 1) + t(power, n - 1)) * sd / sqrt(n). None for n < 2."""
    if sd is None or n < 2:
        return None
    a = alpha / max(m, 1)
    return float((st.t.ppf(1 - a / 2, n - 1) + st.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def association(runs):
    """Does a higher x go with a higher y? ``runs``: (group, x, y) per run. Spearman's rank correlation over all
    runs (two-sided p), and Pearson's over the runs with their group's means removed (groups of at least 2 runs;
    the p treats the centred points as independent, which they are not quite: each group's removed mean costs a
    degree of freedom, so it is somewhat too small). None for a statistic with fewer than 3 points or a constant
    variable."""
    out = {"n": len(runs), "spearman_rho": None, "spearman_p": None, "within_n": 0, "within_r": None, "within_p": None}

    def usable(xs, ys):
        return len(xs) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1

    xs, ys = [r[1] for r in runs], [r[2] for r in runs]
    if usable(xs, ys):
        res = st.spearmanr(xs, ys)
        out.update(spearman_rho=float(res.statistic), spearman_p=float(res.pvalue))
    centred = []
    for g in dict.fromkeys(r[0] for r in runs):
        mine = [r for r in runs if r[0] == g]
        if len(mine) >= 2:
            mx, my = sum(r[1] for r in mine) / len(mine), sum(r[2] for r in mine) / len(mine)
            centred += [(r[1] - mx, r[2] - my) for r in mine]
    cx, cy = [c[0] for c in centred], [c[1] for c in centred]
    out["within_n"] = len(centred)
    if usable(cx, cy):
        res = st.pearsonr(cx, cy)
        out.update(within_r=float(res.statistic), within_p=float(res.pvalue))
    return out
