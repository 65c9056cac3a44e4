#!/usr/bin/env python
"""Time each condition of a grid against its plain reference, side by side on the same batches: the cost in
time of the regularizer as the grid runs it (method: fairseq_dpreg/experiment/bench.py). Run it on a quiet machine.

    scripts/bench_grid.py examples/experiments/gigaword_warm.yaml [--updates 48] [--seeds 1,2] [--only a,b]
    scripts/bench_grid.py GRID --seeds 4,5 --json bench.json --add    # more rounds, added to bench.json's
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fairseq_dpreg.atomic import write_json_atomic  # noqa: E402
from fairseq_dpreg.experiment import bench  # noqa: E402
from fairseq_dpreg.experiment.grid import GridError, load_grid  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", help="the grid file (examples/experiments/*.yaml); its data must be prepared")
    p.add_argument("--updates", type=int, default=48, help=f"updates a run, a multiple of {bench.WINDOW} above "
                   f"{bench.SKIP} (default %(default)s)")
    p.add_argument("--seeds", default="1,2", help="comma-separated seeds, one round each (default %(default)s)")
    p.add_argument("--only", help="comma-separated conditions (default: all but the baseline candidates)")
    p.add_argument("--plain", help="the plain reference (default: the baseline candidate at the others' --lr)")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--add", action="store_true", help="add these rounds to those of the existing --json file "
                   "(same variants and --updates, other seeds) and summarise them all")
    args = p.parse_args()
    try:
        grid = load_grid(args.grid)
        conds = bench.variants(grid, args.only.split(",") if args.only else None, args.plain)
    except GridError as e:
        p.error(str(e))
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds {args.seeds}: give whole numbers, comma-separated")
    if len(set(seeds)) != len(seeds):
        p.error(f"--seeds {args.seeds}: a seed is given twice")
    if args.updates <= bench.SKIP or args.updates % bench.WINDOW:
        p.error(f"--updates {args.updates}: must be a multiple of {bench.WINDOW} above {bench.SKIP}")
    if not os.path.isdir(grid.data):
        p.error(f"{args.grid}: its data {grid.data} is not there (prepare it: see the grid file's header)")
    old = None
    if args.add:
        if not (args.json and os.path.isfile(args.json)):
            p.error("--add: give the --json file of the earlier rounds")
        with open(args.json, encoding="utf-8") as f:
            old = json.load(f)
        if (old.get("grid"), old.get("updates")) != (grid.name, args.updates):
            p.error(f"--add: {args.json} timed {old.get('grid')} at {old.get('updates')} updates, not "
                    f"{grid.name} at {args.updates}")
        try:  # the same variants, other seeds: checked before any run
            bench.add_rounds(old["variants"], {c.name: dict.fromkeys(seeds, 1.0) for c in conds})
        except bench.BenchError as e:
            p.error(f"--add: {e}")
    work = tempfile.mkdtemp(prefix="bench_grid.")  # kept when a run fails: its train.log is there
    rounds = {c.name: {} for c in conds}
    try:
        for seed in seeds:
            for c in conds:
                rounds[c.name][seed] = bench.time_one(grid, c, seed, os.path.join(work, f"{c.name}-seed{seed}"),
                                                      args.updates)
                print(f"seed {seed}: {c.name:20s} {rounds[c.name][seed]:.2f} s/update", flush=True)
        if old:
            rounds = bench.add_rounds(old["variants"], rounds)
    except bench.BenchError as e:
        sys.exit(f"bench_grid: {e}")
    shutil.rmtree(work)
    out = bench.summary(rounds)
    print(f"\n{'condition':20s} s/update  x {conds[0].name}   ({len(rounds[conds[0].name])} rounds of "
          f"{args.updates} updates, medians)")
    for n, r in out.items():
        print(f"{n:20s} {r['s_per_update']:8.2f}  {r['ratio_to_plain']:7.2f}")
    if args.json:
        write_json_atomic(args.json, {"grid": grid.name, "updates": args.updates,
                                      "threads": os.environ.get("OMP_NUM_THREADS"), "variants": out})


if __name__ == "__main__":
    main()
