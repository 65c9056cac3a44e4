#!/usr/bin/env python
"""Run a grid of conditions x seeds through the project's recipes, then write the results table and plots.

    scripts/experiment.py GRID [--jobs N | --gpus 0,1,2,3] [--out DIR] [--retry-failed] [--rerun-changed]
    scripts/experiment.py GRID --dry-run        # print the commands of the runs not finished yet
    scripts/experiment.py GRID --report-only    # rebuild the table and plots from the finished runs
    scripts/experiment.py GRID --only plain-lr2e-5,dotprod-b0.1 [--seeds 1,2]   # a part of the grid
    scripts/experiment.py GRID --export-results docs/measured/NAME   # keep each finished run's result.json
    scripts/experiment.py GRID --import-results docs/measured/NAME --report-only --out DIR   # the kept runs' table

GRID is a YAML or JSON file (format: fairseq_dpreg/experiment/grid.py; examples: examples/experiments/).
Finished runs (OUT/runs/<condition>/seed<S>/result.json) are skipped: after an interruption, run the same
command again. A finished run gets the steps the grid gained since (alignment) without training again.
Writes OUT/results.md, OUT/results.json, OUT/plots/{metric,curves}.png. Kept runs (one CONDITION-seedS.json per
run, the run's result.json unchanged: fairseq_dpreg/experiment/archive.py) go back into OUT as finished runs with
--import-results, before anything is run; --export-results writes them, after.
Exit status: 0 when every run finished ok, 1 when some failed, 2 on a bad grid, 128+N when stopped by signal N.
SIGUSR1 (kill -USR1 $(cat OUT/.lock): the runner's pid) drains: the runs under way finish and no new one starts; the
table and --export-results are then written for the runs finished, and the exit status is 128+10 (SIGUSR1) while runs
are left to do.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_dpreg.experiment.archive import export_results, import_results  # noqa: E402
from fairseq_dpreg.experiment.grid import GridError, load_grid  # noqa: E402
from fairseq_dpreg.experiment.report import write_report  # noqa: E402
from fairseq_dpreg.experiment.runner import DRAINED, Runner  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", help="the grid file (.yaml, .yml or .json)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (CPU: the cores are split between them)")
    p.add_argument("--gpus", help="comma-separated GPU ids: one job per GPU, CUDA_VISIBLE_DEVICES set per job "
                                  "(replaces --jobs)")
    p.add_argument("--out", help="output folder (default: the grid's out, else experiments/<name>)")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again, from the step that failed when the steps before it finished "
                   "with the same commands (a failed evaluation keeps its training); default: kept as failed")
    p.add_argument("--rerun-changed", action="store_true", help="score finished runs again whose steps after the "
                   "training changed in the grid (checkpoint, eval_flags, alignment), from the first that changed, "
                   "on the training they have (the earlier metrics kept in result.json as resumed.previous_metrics); "
                   "a finished training is never run again; default: finished runs are left as they are")
    p.add_argument("--only", help="comma-separated condition names: run only these (e.g. one row of a results page "
                                  "and its baseline); the table still covers the whole grid, the rest as missing")
    p.add_argument("--seeds", help="comma-separated seeds of the grid: run only these")
    p.add_argument("--import-results", metavar="DIR", help="first put the runs kept in DIR (CONDITION-seedS.json) "
                   "into OUT as finished runs; a run finished in OUT already keeps its own result")
    p.add_argument("--export-results", metavar="DIR", help="at the end, copy every finished run's result.json to "
                                                           "DIR/CONDITION-seedS.json")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the commands of the runs to do; run nothing")
    mode.add_argument("--report-only", action="store_true", help="rebuild the table and plots; run nothing")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    if args.gpus is not None and not gpus:
        p.error("--gpus: give GPU ids, e.g. 0,1")
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only is not None else None
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds is not None else None
    except ValueError:
        p.error(f"--seeds {args.seeds}: give seed numbers, e.g. 1,2")
    if only == [] or seeds == []:
        p.error("--only / --seeds: give at least one condition name / seed")
    if args.dry_run and (args.import_results or args.export_results):
        p.error("--dry-run writes nothing: leave out --import-results / --export-results")
    try:
        grid = load_grid(args.grid, out=args.out)
        runner = Runner(grid, jobs=args.jobs, gpus=gpus, retry_failed=args.retry_failed, only=only, seeds=seeds,
                        rerun_changed=args.rerun_changed)
        if args.import_results:
            imported, kept = import_results(grid, args.import_results)
            print(f"{args.import_results}: {len(imported)} runs put into {grid.out}"
                  + "".join(f"; {c} seed {s} kept its own, different result" for c, s in kept))
    except (GridError, RuntimeError) as e:
        print(f"experiment.py: error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        runner.dry_run()
        return 0
    status = 0
    if not args.report_only:
        try:
            status = runner.run()
        except RuntimeError as e:
            print(f"experiment.py: error: {e}", file=sys.stderr)
            return 2
        if status and status != DRAINED:  # interrupted: runs in flight were stopped, nothing to report yet
            return status
    table, paths = write_report(grid)
    print(open(paths[0], encoding="utf-8").read())
    print("written: " + ", ".join(paths))
    if args.export_results:
        print(f"{args.export_results}: {len(export_results(grid, args.export_results))} run files written")
    if status == DRAINED:  # runs left to do
        return status
    failed = sum(len(r["failed"]) for r in table["conditions"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
