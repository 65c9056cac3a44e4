"""The final RTE table of docs/RESULTS.md, from the per-run files of this folder and the core grid's
results.json (../rte-core/: plain-lr2e-5 and dotprod-b0.1, whose per-run files were not kept), with the
runner's own statistics (fairseq_dpreg.experiment.stats). Prints Markdown; run from the repository root:

    .venv/bin/python docs/measured/rte-sweep/assemble.py

The runner's results.md of the sweep's output folder cannot be the table: that folder does not hold the core
grid's runs, so it would select the reference from two candidates and lack the dotprod-b0.1 row."""
import json
import os

from scipy.stats import pearsonr, spearmanr

from fairseq_dpreg.experiment import archive, report, stats
from fairseq_dpreg.experiment.grid import load_grid

HERE = os.path.dirname(os.path.abspath(__file__))
GRID = load_grid(os.path.join(HERE, "..", "..", "..", "examples", "experiments", "superglue_minilm_rte.yaml"))
COMPARED = [c.name for c in GRID.conditions if c.name not in GRID.candidates]
MAJORITY = 100 * 146 / 277  # RTE dev: 146 of 277 examples are "entailment"
SECONDARY = "plain-lr2e-5"  # every compared condition runs at lr 2e-5
FIT = {"train_loss": lambda runs: report._fit(runs, "train_loss"), "grad_cos": report._alignment,
       "dpreg_cos": lambda runs: report._fit(runs, "dpreg_cos"),
       "reg_ratio": lambda runs: report._fit(runs, "dpreg_reg_ratio"),
       "train_min": lambda runs: {s: w / 60 for s, w in report._train_wall(runs).items()}}


def load():
    """(results, acc, core): results {condition: {seed: result.json}} of this folder's per-run files; acc
    {condition: {seed: accuracy}} of the finished runs (the runner's report.value: failed runs are reported and
    left out), the core grid's two conditions included; core {condition: its results.json row}, whose fit
    columns are condition means (its per-run files were not kept)."""
    results, acc = {}, {}
    for c in GRID.conditions:
        for seed in GRID.seeds:
            path = os.path.join(HERE, archive.kept_name(c.name, seed))
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    results.setdefault(c.name, {})[seed] = json.load(f)
    for c, runs in results.items():
        acc[c] = {s: v for s, r in runs.items() if (v := report.value(r, GRID.metric)) is not None}
        for s in sorted(set(runs) - set(acc[c])):
            print(f"FAILED, not averaged in: {c} seed {s}: {runs[s].get('error')}")
    with open(os.path.join(HERE, "..", "rte-core", "results.json"), encoding="utf-8") as f:
        core = {row["name"]: row for row in json.load(f)["conditions"]}
    for c, row in core.items():
        acc[c] = {int(s): v for s, v in row["values"].items()}
    return results, acc, core


def column(c, key, results, core):
    """The condition's mean of a fit column over its finished seeds (the core grid's: its own mean)."""
    if c in core:
        return core[c].get(key)
    values = list(FIT[key](results[c]).values())
    return sum(values) / len(values) if values else None


def fmt(v, spec=".2f", signed=False):
    if v is None:
        return "-"
    return format(v, ("+" if signed else "") + spec)


def main():
    results, acc, core = load()
    candidates = GRID.candidates
    print("| condition | n | seeds 1-5 | mean | sd | 95% CI | train loss | grad cos | dpreg_cos | reg ratio | train min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in [c.name for c in GRID.conditions]:
        d = stats.describe(list(acc[c].values()))
        ci = f"[{d['ci'][0]:.2f}, {d['ci'][1]:.2f}]" if d["ci"] else "-"
        per = " / ".join(fmt(acc[c].get(s)) for s in GRID.seeds)
        print(f"| {c} | {d['n']} | {per} | {fmt(d['mean'])} | {fmt(d['sd'])} | {ci} | "
              f"{fmt(column(c, 'train_loss', results, core), '.3f')} | "
              f"{fmt(column(c, 'grad_cos', results, core), '.3f', True)} | "
              f"{fmt(column(c, 'dpreg_cos', results, core), '.3f', True)} | "
              f"{fmt(column(c, 'reg_ratio', results, core) if c.startswith('dotprod') else None)} | "
              f"{fmt(column(c, 'train_min', results, core), '.1f')} |")

    means = {c: stats.describe(list(acc[c].values()))["mean"] for c in candidates}
    ref = max(candidates, key=lambda c: means[c])  # the runner's rule: the best mean, a tie to the first listed
    print(f"\nreference: {ref} (best mean of {', '.join(f'{c} {means[c]:.2f}' for c in candidates)})\n")
    cmps = [compare(c, acc, ref) for c in COMPARED]
    full = [c for c in cmps if c["n"] == len(GRID.seeds)]
    m = len(cmps)  # the planned family: a comparison short of seeds still counts in m
    for c, p in zip(full, stats.holm([c["p"] for c in full], m)):
        c["p_holm"] = p
    print(f"| paired by seed | differences, seeds 1-5 | mean | sd | 95% CI | t | p | Holm (m = {m}) | Wilcoxon p | "
          f"MDE (m = 1 / {m}) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in sorted(full, key=lambda c: c["p"]):
        print(row(c, ref, m))
    for c in cmps:
        if c["n"] != len(GRID.seeds):
            print(f"| {c['condition']} - {ref} (n = {c['n']}, counted in m, no p) | " + " | ".join(["-"] * 9) + " |")
    print("| *secondary, uncorrected: against plain at the same lr* | | | | | | | | | |")
    for c in COMPARED:
        print(row(compare(c, acc, SECONDARY), SECONDARY, None))
    print("| *secondary, uncorrected: dotprod against Reptile and FOMAML at alpha 0.01* | | | | | | | | | |")
    for c in [c for c in COMPARED if c.startswith("dotprod")]:
        for base in ("reptile-a0.01", "fomaml-a0.01"):
            print(row(compare(c, acc, base), base, None))
    alignment(results, acc)


def alignment(results, acc):
    """Does a higher held-out gradient alignment go with a higher dev accuracy? Spearman's rank correlation
    over the runs with a per-run file, all of them and those above the majority class (52.71: the runs that
    learned), and within conditions (each run's values minus its condition's means; Pearson)."""
    pts = [(c, g, acc[c][s]) for c, runs in results.items() for s, g in report._alignment(runs).items()
           if s in acc[c]]
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
