"""The final RTE table of docs/RESULTS.md, from the per-run files of this folder and the core grid's
results.json (../rte-core/: plain-lr2e-5 and dotprod-b0.1, whose per-run files were not kept), with the
runner's own statistics (fairseq_dpreg.experiment.stats). Prints Markdown; run from the repository root:

    .venv/bin/python docs/measured/rte-sweep/assemble.py

The runner's results.md of the sweep's output folder cannot be the table: that folder does not hold the core
grid's runs, so it would select the reference from two candidates and lack the dotprod-b0.1 row."""
import glob
import json
import os
import re

from scipy.stats import pearsonr, spearmanr

from fairseq_dpreg.experiment import stats

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = [1, 2, 3, 4, 5]
CANDIDATES = ["plain-lr1e-5", "plain-lr2e-5", "plain-lr5e-5"]
COMPARED = ["dotprod-b0.03", "dotprod-b0.1", "dotprod-b0.3", "dotprod-abs0.01", "dotprod-abs0.003",
            "dotprod-b0.1-int4", "reptile-a0.1", "fomaml-a0.1", "reptile-a0.01", "fomaml-a0.01"]
MAJORITY = 100 * 146 / 277  # RTE dev: 146 of 277 examples are "entailment"
SECONDARY = "plain-lr2e-5"  # every compared condition but plain-lr5e-5's other candidates runs at lr 2e-5


def load():
    """{condition: {seed: run}}, a run being {acc, train_loss, grad_cos, dpreg_cos, reg_ratio, train_min}
    (None where unknown); failed runs are reported and left out."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(HERE, "*-seed*.json"))):
        cond, seed = re.fullmatch(r"(.+)-seed(\d+)\.json", os.path.basename(path)).groups()
        r = json.load(open(path))
        if r["status"] != "ok":
            print(f"FAILED, not averaged in: {cond} seed {seed}: {r.get('error')}")
            continue
        fit, align = r["fit"], r["metrics"].get("alignment") or {}
        wall = [s["wall_s"] for s in r["steps"] if s["name"] == "train"]
        runs.setdefault(cond, {})[int(seed)] = {
            "acc": r["metrics"]["valid"]["accuracy"], "train_loss": fit.get("train_loss"),
            "grad_cos": align.get("mean_cos"), "dpreg_cos": fit.get("dpreg_cos"),
            "reg_ratio": fit.get("dpreg_reg_ratio"), "train_min": wall[0] / 60 if wall else None}
    core = json.load(open(os.path.join(HERE, "..", "rte-core", "results.json")))
    for row in core["conditions"]:  # per-seed accuracy only; fit columns are the condition means
        runs[row["name"]] = {int(s): {"acc": v} for s, v in row["values"].items()}
        runs[row["name"]]["mean"] = {k: row.get(k) for k in ("train_loss", "grad_cos", "dpreg_cos", "train_min")}
    return runs


def column(runs, key):
    vals = [r.get(key) for s, r in runs.items() if s != "mean"]
    vals = [v for v in vals if v is not None]
    if vals:
        return sum(vals) / len(vals)
    return (runs.get("mean") or {}).get(key)


def fmt(v, spec=".2f", signed=False):
    if v is None:
        return "-"
    return format(v, ("+" if signed else "") + spec)


def main():
    runs = load()
    acc = {c: {s: r["acc"] for s, r in runs[c].items() if s != "mean"} for c in runs}
    print("| condition | n | seeds 1-5 | mean | sd | 95% CI | train loss | grad cos | dpreg_cos | reg ratio | train min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in CANDIDATES + COMPARED:
        d = stats.describe([acc[c][s] for s in SEEDS if s in acc[c]])
        ci = f"[{d['ci'][0]:.2f}, {d['ci'][1]:.2f}]" if d["ci"] else "-"
        per = " / ".join(fmt(acc[c].get(s)) for s in SEEDS)
        print(f"| {c} | {d['n']} | {per} | {fmt(d['mean'])} | {fmt(d['sd'])} | {ci} | "
              f"{fmt(column(runs[c], 'train_loss'), '.3f')} | {fmt(column(runs[c], 'grad_cos'), '.3f', True)} | "
              f"{fmt(column(runs[c], 'dpreg_cos'), '.3f', True)} | "
              f"{fmt(column(runs[c], 'reg_ratio') if c.startswith('dotprod') else None)} | "
              f"{fmt(column(runs[c], 'train_min'), '.1f')} |")

    means = {c: stats.describe(list(acc[c].values()))["mean"] for c in CANDIDATES}
    ref = max(CANDIDATES, key=lambda c: means[c])
    print(f"\nreference: {ref} (best mean of {', '.join(f'{c} {means[c]:.2f}' for c in CANDIDATES)})\n")
    cmps = [compare(c, acc, ref) for c in COMPARED]
    full = [c for c in cmps if c["n"] == len(SEEDS)]
    m = len(full)
    for c, p in zip(full, stats.holm([c["p"] for c in full])):
        c["p_holm"] = p
    print(f"| paired by seed | differences, seeds 1-5 | mean | sd | 95% CI | t | p | Holm (m = {m}) | Wilcoxon p | "
          f"MDE (m = 1 / {m}) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in sorted(full, key=lambda c: c["p"]):
        print(row(c, ref, m))
    for c in cmps:
        if c["n"] != len(SEEDS):
            print(f"| {c['condition']} - {ref} (n = {c['n']}, not counted in m) | " + " | ".join(["-"] * 9) + " |")
    print("| *secondary, uncorrected: against plain at the same lr* | | | | | | | | | |")
    for c in COMPARED:
        print(row(compare(c, acc, SECONDARY), SECONDARY, None))
    print("| *secondary, uncorrected: dotprod against Reptile and FOMAML at alpha 0.01* | | | | | | | | | |")
    for c in [c for c in COMPARED if c.startswith("dotprod")]:
        for base in ("reptile-a0.01", "fomaml-a0.01"):
            print(row(compare(c, acc, base), base, None))
    alignment(runs)


def alignment(runs):
    """Does a higher held-out gradient alignment go with a higher dev accuracy? Spearman's rank correlation
    over the runs with a per-run file, all of them and those above the majority class (52.71: the runs that
    learned), and within conditions (each run's values minus its condition's means; Pearson)."""
    pts = [(c, r["grad_cos"], r["acc"]) for c in runs for s, r in runs[c].items()
           if s != "mean" and r.get("grad_cos") is not None]
    learned = [p for p in pts if p[2] > MAJORITY + 1e-9]
    print()
    for name, sel in (("all runs", pts), (f"runs above the majority class ({MAJORITY:.2f})", learned)):
        rho, p = spearmanr([x[1] for x in sel], [x[2] for x in sel])
        print(f"held-out grad cos against dev accuracy, {name}: Spearman rho {rho:+.2f}, p {p:.2g}, n {len(sel)}")
    centred = []
    for c in {x[0] for x in learned}:
        xs = [x for x in learned if x[0] == c]
        if len(xs) >= 2:
            mg, ma = sum(x[1] for x in xs) / len(xs), sum(x[2] for x in xs) / len(xs)
            centred += [(x[1] - mg, x[2] - ma) for x in xs]
    r, p = pearsonr([x[0] for x in centred], [x[1] for x in centred])
    print(f"the same within conditions (runs that learned, condition means removed): Pearson r {r:+.2f}, p {p:.2g}, "
          f"n {len(centred)}")


def compare(cond, acc, base):
    """The runner's paired comparison of cond against base, with the per-seed differences."""
    c = dict(condition=cond, **stats.paired(acc[cond], acc[base]))
    c["diffs"] = [acc[cond][s] - acc[base][s] for s in c["seeds"]]
    return c


def row(c, base, m):
    diffs = " / ".join(fmt(v, signed=True) for v in c["diffs"])
    ci = f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]" if c["ci"] else "-"
    mde1 = stats.mde(c["sd"], c["n"], 1)
    mdem = stats.mde(c["sd"], c["n"], m) if m else None
    return (f"| {c['condition']} - {base} | {diffs} | {fmt(c['mean'], signed=True)} | {fmt(c['sd'])} | {ci} | "
            f"{fmt(c['t'])} | {fmt(c['p'], '.3g')} | {fmt(c.get('p_holm'), '.3g')} | {fmt(c['p_wilcoxon'], '.2g')} | "
            f"{fmt(mde1)} / {fmt(mdem, '.1f')} |")


if __name__ == "__main__":
    main()
