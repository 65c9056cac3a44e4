"""A grid's finished runs kept apart from its output folder: one file per run, ``CONDITION-seedS.json``, that run's
result.json unchanged (docs/measured/<grid>/ are such folders, committed as runs finish).

``export_results`` writes them from OUT/runs/CONDITION/seedS/result.json; ``import_results`` puts them back there,
so that the runner counts those runs as finished (it runs the rest of the grid) and ``--report-only`` rebuilds the
table and the metric plot from the kept files alone (the curves need the training logs, which are not kept). An
imported run is never trained again, nor given steps the grid gained since: its commands name another output
folder, and its checkpoint is not there; an imported failed run is started again from nothing by --retry-failed.
"""
import json
import os
import re
import shutil

from ..atomic import atomic_open, write_json_atomic
from .grid import GridError
from .runner import MARKER, RESULT, attempt_left, lock_folder, now, plan, run_dir

NAME = re.compile(r"(?P<condition>.+)-seed(?P<seed>\d+)\.json")


def kept_name(condition, seed):
    return f"{condition}-seed{seed}.json"


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path, data):
    with atomic_open(path, "wb") as f:
        f.write(data)


def export_results(grid, dest):
    """Copy every finished run's result.json (failed ones too) to ``dest``/CONDITION-seedS.json; returns the paths
    written (a file already there with the same content is left alone)."""
    written = []
    for cond, seed in plan(grid):
        data = _read(os.path.join(run_dir(grid, cond.name, seed), RESULT))
        path = os.path.join(dest, kept_name(cond.name, seed))
        if data is not None and _read(path) != data:
            _write(path, data)
            written.append(path)
    return written


def import_results(grid, src):
    """Put each ``src``/CONDITION-seedS.json back as the run's OUT/runs/CONDITION/seedS/result.json, holding the
    output folder's lock. A run that has a result already keeps it; the folder an interrupted attempt left is
    replaced (a run folder the runner did not make is a RuntimeError, before anything is written). Files named
    otherwise (README.md, plots) are not runs and are passed over. Returns (imported, kept): the (condition, seed)
    pairs put back, and those that kept a different result of their own.

    ``GridError`` before anything is written: no such folder, a file named as a run the grid does not have, or a
    file that is not that run's result.json."""
    try:
        names = sorted(os.listdir(src))
    except OSError as e:
        raise GridError(f"--import-results {src}: {e.strerror}") from None
    conditions = {c.name for c in grid.conditions}
    found = []
    for name in names:
        m = NAME.fullmatch(name)
        if not m:
            continue
        path, cond, seed = os.path.join(src, name), m["condition"], int(m["seed"])
        if cond not in conditions or seed not in grid.seeds:
            raise GridError(f"{path}: {grid.path} has no run {cond} seed {seed} (conditions: "
                            f"{', '.join(sorted(conditions))}; seeds: {', '.join(map(str, grid.seeds))})")
        data = _read(path)
        try:
            res = json.loads(data)
        except ValueError as e:
            raise GridError(f"{path}: not JSON ({e})") from None
        if not isinstance(res, dict) or res.get("condition") != cond or res.get("seed") != seed \
                or res.get("status") not in ("ok", "failed"):
            raise GridError(f"{path}: not the result.json of {cond} seed {seed} (it needs condition {cond!r}, "
                            f"seed {seed} and a status ok or failed)")
        found.append((cond, seed, data))
    todo, kept = [], []
    lock = lock_folder(grid.out)
    try:
        for cond, seed, data in found:
            rdir = run_dir(grid, cond, seed)
            have = _read(os.path.join(rdir, RESULT))
            if have is None:
                todo.append((cond, seed, data, rdir, attempt_left(rdir)))
            elif have != data:
                kept.append((cond, seed))
        for cond, seed, data, rdir, left in todo:
            if left:
                shutil.rmtree(rdir)
            # the runner's marker: the folder is the runner's (--retry-failed may start the run again there)
            write_json_atomic(os.path.join(rdir, MARKER), {"condition": cond, "seed": seed, "imported": src,
                                                            "started": now()})
            _write(os.path.join(rdir, RESULT), data)
    finally:
        lock.close()
    return [(cond, seed) for cond, seed, *_ in todo], kept
