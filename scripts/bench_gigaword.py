#!/usr/bin/env python
"""Cost of each Gigaword grid condition against plain training on the warm-started model, measured side by side.

The grid's training times (docs/RESULTS.md) come from runs of different sessions, two at a time, beside other
loads: their ratios mix the machine's speed with the algorithm's cost. This script measures the cost alone: in
each round, every variant trains `examples/gigaword/train.sh minilm-warm ALGO` for --updates updates, one after
the other, with the round's seed (the same batches for every variant; --no-save, --disable-validation). The time
of an update is the wall time fairseq logs from update 8 to the last (start-up and the first batches left out:
whole seconds, so one second of rounding over the run), divided by the updates between. Per variant it prints the
median seconds per update over rounds and the median over rounds of its ratio to plain's time in the same round.
Run it on a quiet machine.

    scripts/bench_gigaword.py [--data data-bin/giga-wp] [--updates 48] [--rounds 2] [--only plain,dotprod]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fairseq_dpreg.atomic import write_json_atomic  # noqa: E402
from fairseq_dpreg.experiment.logs import read_log  # noqa: E402

WINDOW = 4  # --log-interval
SKIP = 8  # updates not timed: start-up and the first batches
# name: (ALGO, environment, extra flags), as in examples/experiments/gigaword_warm.yaml (beta 0.3 costs as 0.1)
VARIANTS = {
    "plain": ("plain", {}, []),
    "dotprod": ("dotprod", {"DPREG_LAMBDA": "0.1"}, []),
    "dotprod-int4": ("dotprod", {"DPREG_LAMBDA": "0.1"}, ["--dpreg-interval", "4"]),
    "reptile": ("reptile", {"DPREG_ALPHA": "0.01"}, []),
    "fomaml": ("fomaml", {"DPREG_ALPHA": "0.01"}, []),
}


def seconds_per_update(log_path):
    """Wall seconds per update from update SKIP to the last logged one."""
    inner = [r for r in read_log(log_path)["inner"] if r["updates"] >= SKIP]
    if len(inner) < 2 or inner[0]["updates"] != SKIP:
        raise SystemExit(f"bench_gigaword: {log_path} lacks train_inner records at update {SKIP} and after")
    return (inner[-1]["wall"] - inner[0]["wall"]) / (inner[-1]["updates"] - SKIP)


def train(name, seed, args, work):
    algo, env, flags = VARIANTS[name]
    save = Path(work) / f"{name}-seed{seed}"
    cmd = ["bash", str(REPO / "examples/gigaword/train.sh"), "minilm-warm", algo, args.data, str(save),
           "--lr", "5e-4", "--seed", str(seed), "--max-update", str(args.updates), "--log-interval", str(WINDOW),
           "--no-save", "--disable-validation", *flags]
    if subprocess.run(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
        raise SystemExit(f"bench_gigaword: {name} seed {seed} failed, see {save}/train.log")
    return seconds_per_update(save / "train.log")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data-bin/giga-wp", help="DATA_BIN of prepare.sh --bpe hf (default %(default)s)")
    p.add_argument("--updates", type=int, default=48, help="updates a run, a multiple of 4 above 8 (default 48)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of all variants, seeds 1..N (default 2)")
    p.add_argument("--only", default=",".join(VARIANTS), help="variants, comma-separated (default: all)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args()
    names = args.only.split(",")
    for bad in [n for n in names if n not in VARIANTS]:
        p.error(f"--only: no variant {bad!r} (have {', '.join(VARIANTS)})")
    if "plain" not in names:
        names.insert(0, "plain")
    if args.updates <= SKIP or args.updates % WINDOW:
        p.error(f"--updates {args.updates}: must be a multiple of {WINDOW} above {SKIP} (timed windows of "
                f"{WINDOW} updates, whole periods of the interval-4 variant)")
    if not os.path.isfile(os.path.join(args.data, "dict.src.txt")):
        p.error(f"--data {args.data}: no dict.src.txt (build it with examples/gigaword/prepare.sh ... --bpe hf)")
    times = {n: [] for n in names}
    work = tempfile.mkdtemp(prefix="bench_gigaword.")  # kept when a run fails: its train.log is there
    for seed in range(1, args.rounds + 1):
        for n in names:
            times[n].append(train(n, seed, args, work))
            print(f"round {seed}: {n:13s} {times[n][-1]:.2f} s/update", flush=True)
    shutil.rmtree(work)
    out = {n: {"s_per_update": statistics.median(t),
               "ratio_to_plain": statistics.median(a / b for a, b in zip(t, times["plain"])), "rounds": t}
           for n, t in times.items()}
    print(f"\n{'variant':13s} s/update  x plain   ({args.rounds} rounds of {args.updates} updates, medians)")
    for n, r in out.items():
        print(f"{n:13s} {r['s_per_update']:8.2f}  {r['ratio_to_plain']:7.2f}")
    if args.json:
        write_json_atomic(args.json, {"updates": args.updates, "threads": os.environ.get("OMP_NUM_THREADS"),
                                      "variants": out})


if __name__ == "__main__":
    main()
