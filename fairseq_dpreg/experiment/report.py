"""The results of a grid: one table (OUT/results.md and OUT/results.json, written atomically) and two plots
(OUT/plots/metric.png, OUT/plots/curves.png), rebuilt from the finished runs' result.json and train.log.

A failed run is counted and listed, never averaged in. The baseline is the best of its candidates by the
mean of ``select_on`` over their finished seeds (a tie goes to the first listed); the candidates are not
compared with it (they took part in the selection). Every other condition is, paired by seed. The grid's
``secondary`` pairs (e.g. dotprod against Reptile) are compared the same way in a table of their own, uncorrected:
they are not counted in Holm's m."""
import os

from ..atomic import atomic_open, write_atomic, write_json_atomic
from . import logs, stats
from .runner import load_result, metric_value, now, run_dir

TEST = ("paired t-test (two-sided) of the differences condition - baseline over the seeds both finished; "
        "p Holm: Holm's step-down correction across the {m} comparisons of this table (one without a p yet, "
        "not run or failed, counts as p = 1: a grid read before its end is corrected as planned); Wilcoxon: signed-rank "
        "test (two-sided, exact for small n), secondary, uncorrected")
MDE = ("MDE: the smallest true mean difference this design detects with 80% power at two-sided alpha "
       "0.05/{m} (Bonferroni, Holm's strictest step), from the observed sd of the differences: "
       "(t(1 - 0.05/(2*{m}), n-1) + t(0.8, n-1)) * sd / sqrt(n)")


def value(result, metric):
    """The value of ``metric`` in a finished run's result, or None."""
    if result is None or result.get("status") != "ok":
        return None
    if metric.log:
        v = result.get("fit", {}).get("last_valid", {}).get(metric.key)
        return v if isinstance(v, float) else None
    try:
        return metric_value(result["metrics"][metric.split], metric.key)
    except KeyError:
        return None


def build(grid):
    """The table as a JSON-ready dict."""
    results = {c.name: {s: load_result(grid, c.name, s) for s in grid.seeds} for c in grid.conditions}
    conditions, failures = [], []
    values, per_seed = {}, {}  # condition -> {seed: metric}; condition -> {quantity: {seed: value}} of finished runs
    for c in grid.conditions:
        runs = results[c.name]
        vals = {s: value(r, grid.metric) for s, r in runs.items()}
        vals = values[c.name] = {s: v for s, v in vals.items() if v is not None}
        per_seed[c.name] = {"train_loss": _fit(runs, "train_loss"), "grad_cos": _alignment(runs),
                            "train_wall": _train_wall(runs)}
        failed = [s for s, r in runs.items() if r is not None and s not in vals]
        fits = [r["fit"] for s, r in runs.items() if s in vals]
        row = {"name": c.name, "algo": c.algo, "env": c.env, "flags": c.flags, "requested": len(grid.seeds),
               "failed": failed, "missing": [s for s, r in runs.items() if r is None],
               "values": {str(s): v for s, v in vals.items()}, **stats.describe(list(vals.values()))}
        for key in ("train_loss", "valid_loss", "dpreg_cos", "dpreg_reg_ratio"):
            row[key] = _mean([f[key] for f in fits if f.get(key) is not None])
        if c.algo != "dotprod":  # Reptile and FOMAML have no regularizing term (logs before 2026-12-06 gave it as 0)
            row["dpreg_reg_ratio"] = None
        row["grad_cos"] = _mean(list(per_seed[c.name]["grad_cos"].values()))
        row["train_min"] = _mean([w / 60 for w in per_seed[c.name]["train_wall"].values()])
        conditions.append(row)
        for s in failed:
            r = runs[s]
            failures.append({"condition": c.name, "seed": s, "error": r.get("error") or
                             f"no {grid.metric.key} in its metrics", "log": run_dir(grid, c.name, s)})

    baseline = select_baseline(grid, results)
    comparisons = []
    if baseline["selected"]:
        comparisons = [_compare(values, per_seed, c.name, baseline["selected"]) for c in grid.conditions
                       if c.name not in grid.candidates]
    m = len(comparisons)  # the grid's family, whatever has finished so far
    for c, p in zip(comparisons, stats.holm([c["p"] for c in comparisons], m)):
        c["p_holm"], c["mde"] = p, stats.mde(c["sd"], c["n"], m)
    secondary = [_compare(values, per_seed, name, against) for name, against in grid.secondary]
    for c in secondary:
        c["p_holm"], c["mde"] = None, stats.mde(c["sd"], c["n"], 1)
    # held-out alignment against the metric, run by run (the runs that measured it and finished)
    align = stats.association([(c, g, values[c][s]) for c, q in per_seed.items()
                               for s, g in q["grad_cos"].items() if s in values[c]])
    for row in conditions:
        row["role"] = ("baseline" if row["name"] == baseline["selected"] else
                       "candidate" if row["name"] in grid.candidates else "compared")
    return {
        "name": grid.name, "grid": grid.path, "generated": now(), "pipeline": grid.pipeline, "recipe": grid.recipe,
        "data": grid.data, "checkpoint": grid.checkpoint, "seeds": grid.seeds,
        "metric": vars(grid.metric), "baseline": baseline, "conditions": conditions, "comparisons": comparisons,
        "secondary": secondary, "alignment_vs_metric": align, "tests": TEST.format(m=m),
        "mde": MDE.format(m=max(m, 1)), "failures": failures,
    }


def _compare(values, per_seed, name, against):
    """The paired comparison of condition ``name`` with ``against`` over the seeds both finished, with the paired
    differences of training loss and held-out alignment and the ratio of training wall times."""
    cmp = {"condition": name, "against": against, **stats.paired(values[name], values[against])}
    cmp["diffs"] = [values[name][s] - values[against][s] for s in cmp["seeds"]]
    mine, base = per_seed[name], per_seed[against]
    cmp["train_loss_diff"] = _paired_mean_diff(mine["train_loss"], base["train_loss"], cmp["seeds"])
    cmp["grad_cos_diff"] = _paired_mean_diff(mine["grad_cos"], base["grad_cos"], cmp["seeds"])
    wall, base_wall = mine["train_wall"], base["train_wall"]
    cmp["time_ratio"] = _mean([wall[s] / base_wall[s] for s in cmp["seeds"] if s in wall and s in base_wall])
    return cmp


def _mean(values):
    return sum(values) / len(values) if values else None


def _paired_mean_diff(cond, base, seeds):
    """Mean over ``seeds`` present in both of cond[seed] - base[seed] (None when there is no pair)."""
    return _mean([cond[s] - base[s] for s in seeds if s in cond and s in base])


def _per_seed(runs, get):
    """seed -> get(result) for the finished (status ok) runs where it is not None."""
    values = {s: get(r) for s, r in runs.items() if r and r.get("status") == "ok"}
    return {s: v for s, v in values.items() if v is not None}


def _alignment(runs):
    """seed -> mean cosine of held-out gradients at the run's checkpoint (grid key ``alignment``)."""
    def mean_cos(result):
        v = result.get("metrics", {}).get("alignment", {}).get("mean_cos")
        return float(v) if isinstance(v, (int, float)) else None

    return _per_seed(runs, mean_cos)


def _train_wall(runs):
    """seed -> wall seconds of the training step (the runner's record; runs side by side share the machine). A
    training continued after an interruption (``resume_training``) is left out: its time counts the updates
    redone since its last checkpoint, and its parts ran under other loads."""
    def wall(result):
        train = next((s for s in result.get("steps", []) if s["name"] == "train"), None)
        return train["wall_s"] if train and "attempts" not in train else None
    return _per_seed(runs, wall)


def _fit(runs, key):
    return _per_seed(runs, lambda r: r.get("fit", {}).get(key))


def select_baseline(grid, results):
    sel = grid.select_on
    rows = []
    for name in grid.candidates:
        vals = [v for v in (value(r, sel) for r in results[name].values()) if v is not None]
        rows.append({"name": name, "n": len(vals), "mean": _mean(vals)})
    scored = [r for r in rows if r["mean"] is not None]
    best = None
    if scored:
        best = (max if sel.goal == "max" else min)(scored, key=lambda r: r["mean"])["name"]
    if sel.log:
        note = f"selected on fairseq's last validation {sel.key} (train.log), not on the reported metric"
    elif sel.split == grid.metric.split:
        note = (f"selected on the same split as the reported metric ({sel.split}): there is no separate "
                "validation split, so the baseline's reported mean is optimistic (best of its candidates)")
    else:
        note = f"selected on {sel.key} on {sel.split}, not on the reported split ({grid.metric.split})"
    if len(grid.candidates) == 1:
        note = "a single plain condition: no selection"
    return {"candidates": grid.candidates, "select_on": vars(sel), "selection": rows, "selected": best,
            "note": note}


# -- Markdown -------------------------------------------------------------------------------------------------
def _f(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def _p(x):
    return "-" if x is None else f"{x:.3g}"


def _ci(ci, digits=2):
    return "-" if ci is None else f"[{_f(ci[0], digits)}, {_f(ci[1], digits)}]"


def markdown(t):
    m = t["metric"]
    metric = f"{m['key']} on {m['split']}" if m["split"] else m["key"]
    b = t["baseline"]
    lines = [
        f"# {t['name']}", "",
        f"Grid `{t['grid']}`: {t['pipeline']} recipe `{t['recipe']}` on `{t['data']}`, scored with "
        f"`{t['checkpoint']}`. Metric: **{metric}** (higher is {'better' if m['goal'] == 'max' else 'worse'}). "
        f"Seeds: {', '.join(map(str, t['seeds']))}. Built {t['generated']}.", "",
        f"Baseline: **{b['selected'] or 'none (no candidate finished)'}**, the best of "
        f"{', '.join(b['candidates'])} by mean {b['select_on']['key']} ({b['note']}).",
    ]
    if len(b["selection"]) > 1:
        lines.append("Selection: " + "; ".join(f"{r['name']} {_f(r['mean'], 3)} (n={r['n']})" for r in b["selection"])
                     + ".")
    lines += ["", "## Conditions", "",
              "Mean, sd and 95% t interval over the finished seeds; failed runs are not averaged in. Fit columns: "
              "mean over seeds of fairseq's last epoch-average training loss, last validation loss and last "
              "epoch-average cos(g1, g2) (the regularizer's own, on training batches) and regularizing term over "
              "loss gradient (reg ratio: beta under relative weighting, the effective beta under absolute); grad "
              "cos: mean over seeds "
              "of the mean cosine between gradients of disjoint held-out batches at the scored checkpoint "
              "(scripts/grad_alignment.py; '-' when the grid does not measure it); train min: mean wall minutes "
              "of the training step (a training continued after an interruption is left out of it and of the "
              "time ratios).", "",
              f"| condition | role | algo | n / seeds | failed | seeds {_seeds(t['seeds'])} | mean | sd | 95% CI | "
              "train loss | valid loss | dpreg_cos | reg ratio | grad cos | train min |", "|---" * 15 + "|"]
    for r in t["conditions"]:
        by_seed = " / ".join(_f(r["values"].get(str(s))) for s in t["seeds"])
        lines.append(f"| {r['name']} | {r['role']} | {r['algo']} | {r['n']} / {r['requested']} | "
                     f"{len(r['failed'])} | {by_seed} | {_f(r['mean'])} | {_f(r['sd'])} | {_ci(r['ci'])} | "
                     f"{_f(r['train_loss'], 3)} | {_f(r['valid_loss'], 3)} | {_f(r['dpreg_cos'], 3)} | "
                     f"{_f(r['dpreg_reg_ratio'], 3)} | {_f(r['grad_cos'], 3)} | {_f(r['train_min'], 1)} |")
    a = t.get("alignment_vs_metric")
    if a and a["n"]:
        lines += ["", f"Held-out alignment (grad cos) against {m['key']}, run by run: Spearman rho "
                  f"{_f(a['spearman_rho'])} (p {_p(a['spearman_p'])}, {a['n']} runs); within conditions (each "
                  f"condition's means removed) Pearson r {_f(a['within_r'])} (p {_p(a['within_p'])}, "
                  f"{a['within_n']} runs; the p ignores the means removed, so it is somewhat small)."]
    lines += ["", f"## Against the baseline ({b['selected'] or 'none'}), paired by seed", "",
              t["tests"] + ".", "", t["mde"] + ".", "",
              "Time ratio: mean over the pairs of the training step's wall time, condition / baseline.", ""]
    lines += _comparison_table(t["comparisons"])
    if t.get("secondary"):
        lines += ["", "## Secondary comparisons, paired by seed (uncorrected)", "",
                  "The grid's further pairs, each tested as above against its own reference (paired t-test, Wilcoxon) "
                  "but not counted in Holm's m: read them as uncorrected. MDE at alpha 0.05 (m = 1).", ""]
        lines += _comparison_table(t["secondary"])
    incomplete = [r for r in t["conditions"] if r["n"] < r["requested"]]
    lines += ["", "## Failed and missing runs", ""]
    for f in t["failures"]:
        lines.append(f"- FAILED {f['condition']} seed {f['seed']}: {f['error']}")
    for r in incomplete:
        lines.append(f"- {r['name']}: {r['n']} of {r['requested']} seeds finished"
                     + (f"; failed: {', '.join(map(str, r['failed']))}" if r["failed"] else "")
                     + (f"; not run yet: {', '.join(map(str, r['missing']))}" if r["missing"] else ""))
    if not incomplete:
        lines.append("None: every requested run finished.")
    return "\n".join(lines) + "\n"


def _seeds(seeds):
    """'1-5' for consecutive seeds, else '1, 3, 7'."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _comparison_table(comparisons):
    lines = ["| condition | against | pairs | differences by seed | mean diff | sd | 95% CI | t | p | p Holm "
             "| p Wilcoxon | MDE | train loss diff | grad cos diff | time ratio |", "|---" * 15 + "|"]
    for c in comparisons:
        diffs = " / ".join(f"{s}: {d:+.2f}" for s, d in zip(c["seeds"], c["diffs"])) or "-"
        lines.append(f"| {c['condition']} | {c['against']} | {c['n']} | {diffs} | {_f(c['mean'])} | {_f(c['sd'])} | "
                     f"{_ci(c['ci'])} | {_f(c['t'])} | {_p(c['p'])} | {_p(c['p_holm'])} | {_p(c['p_wilcoxon'])} | "
                     f"{_f(c['mde'])} | {_f(c['train_loss_diff'], 3)} | {_f(c['grad_cos_diff'], 3)} | "
                     f"{_f(c['time_ratio'])} |")
    return lines


# -- plots ------------------------------------------------------------------------------------------------------
def plots(grid, t, folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    names = [r["name"] for r in t["conditions"]]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) + 1), 4))
    for seed in grid.seeds:
        pts = [(i, r["values"][str(seed)]) for i, r in enumerate(t["conditions"]) if str(seed) in r["values"]]
        if pts:
            ax.plot(*zip(*pts), "-o", lw=0.8, ms=4, alpha=0.7, label=f"seed {seed}")
    for i, r in enumerate(t["conditions"]):
        if r["mean"] is not None:
            ax.hlines(r["mean"], i - 0.3, i + 0.3, colors="k", lw=2)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n + (" *" if n == t["baseline"]["selected"] else "") for n in names], rotation=30,
                       ha="right")
    ax.set_ylabel(f"{grid.metric.key} ({grid.metric.split or 'train.log'})")
    ax.set_title(f"{grid.name}: seeds (lines pair them), black bar = mean, * = baseline", fontsize=9)
    ax.legend(fontsize=7)
    paths = [_save(fig, os.path.join(folder, "metric.png"))]

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = [("inner", "loss", "training loss"), ("valid", "valid_loss", "validation loss"),
              ("inner", "dpreg_cos", "cos(g1, g2)")]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, c in enumerate(grid.conditions):
        for seed in grid.seeds:
            res = load_result(grid, c.name, seed)
            if not res or res.get("status") != "ok":
                continue
            log = logs.read_log(os.path.join(run_dir(grid, c.name, seed), "ckpt", "train.log"))
            for ax, (kind, key, _) in zip(axes, panels):
                pts = [(r["updates"], r[key]) for r in log[kind] if isinstance(r.get(key), float)]
                if pts:
                    first = not any(line.get_label() == c.name for line in ax.get_lines())
                    ax.plot(*zip(*pts), color=colours[k % len(colours)], lw=0.8, alpha=0.8, marker=".", ms=3,
                            label=c.name if first else "_nolegend_")
    for ax, (_, _, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("updates")
        if ax.get_lines():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    paths.append(_save(fig, os.path.join(folder, "curves.png")))
    return paths


def _save(fig, path):
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write_report(grid):
    """Write results.md, results.json and the plots into the grid's folder; returns (table, paths)."""
    t = build(grid)
    md, js = os.path.join(grid.out, "results.md"), os.path.join(grid.out, "results.json")
    write_json_atomic(js, t)
    write_atomic(md, markdown(t))
    return t, [md, js] + plots(grid, t, os.path.join(grid.out, "plots"))
