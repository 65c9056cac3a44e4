"""The cost in time of a grid's conditions against its plain reference, measured side by side
(``scripts/bench_grid.py GRID``).

A grid's training times (each run's train_wall) come from runs of different sessions, two at a time, beside other
loads: their ratios mix the machine's speed with the algorithm's cost. Here, in each round, every variant trains
with the grid's own training step (``runner.steps``: the recipe, the condition's algorithm, env and flags, the
round's seed, so the same batches for every variant) for a few updates, one variant after the other, with
``--max-update N --log-interval 4 --no-save --disable-validation`` after the grid's flags (they win). The time of
an update is the time fairseq logs from update 8 to the last (start-up and the first batches left out) over the
updates between: its whole-second wall clock, or the sum of the windows' times by their updates a second where
those round less (a small model's updates). Per variant: the median seconds per update over the rounds, and the
median over the rounds of its ratio to the reference's time in the same round.
"""
import os
import statistics
import subprocess

from . import runner
from .grid import GridError
from .logs import read_log

WINDOW = 4  # --log-interval: the timed updates come in windows of 4 (whole periods of --dpreg-interval 4)
SKIP = 8  # updates not timed


class BenchError(RuntimeError):
    pass


def _lr(cond):
    """The condition's last --lr value, or None."""
    flags = cond.flags
    return next((flags[i + 1] for i in range(len(flags) - 2, -1, -1) if flags[i] == "--lr"), None)


def variants(grid, only=None, plain=None):
    """The conditions to time, the plain reference first. ``only``: names (default: every condition that is not
    a baseline candidate); ``plain``: the reference's name (default: the baseline candidate, or among several the
    one whose --lr is the one those conditions share: the regularized conditions run at the reference's lr)."""
    runner.select(grid, only)
    runner.select(grid, [plain] if plain else None, only_flag="--plain")
    timed = [grid.condition(n) for n in only] if only else [c for c in grid.conditions if c.name not in grid.candidates]
    if plain is None:
        lrs = {_lr(c) for c in timed if c.name not in grid.candidates}
        cands = [grid.condition(n) for n in grid.candidates]
        same = [c for c in cands if len(cands) == 1 or (len(lrs) == 1 and _lr(c) in lrs)]
        if len(same) != 1:
            raise GridError(f"{grid.path}: cannot tell which baseline candidate is the reference (the timed "
                            f"conditions' --lr: {sorted(map(str, lrs))}); name it with --plain")
        plain = same[0].name
    return [grid.condition(plain)] + [c for c in timed if c.name != plain]


def command(grid, cond, seed, save, updates):
    """(argv, env overrides) of one timed run: the grid's training step of ``cond`` at ``seed`` with ``save`` as
    its SAVE_DIR, and the bench's flags after the grid's."""
    argv = list(runner.steps(grid, cond, seed)[0][1])
    argv[argv.index(os.path.join(runner.run_dir(grid, cond.name, seed), "ckpt"))] = str(save)
    argv += ["--max-update", str(updates), "--log-interval", str(WINDOW), "--no-save", "--disable-validation"]
    return argv, runner.env_overrides(grid, cond)


def seconds_per_update(log_path):
    """Wall seconds per update over the updates after SKIP, by whichever of fairseq's two clocks is rounded less
    in this log: "wall" (whole seconds since the start: up to 1 s off over the span; a small model's span can be
    under a second) or "ups" (each window's updates a second to two decimals: a window's time up to
    updates * 0.005 / ups**2 off, 2.5 % of it at 0.2 ups)."""
    inner = [r for r in read_log(log_path)["inner"] if r["updates"] >= SKIP]
    if len(inner) < 2 or inner[0]["updates"] != SKIP:
        raise BenchError(f"{log_path}: no train_inner records at update {SKIP} and after")
    n = inner[-1]["updates"] - SKIP
    windows = [(b["updates"] - a["updates"], b.get("ups")) for a, b in zip(inner, inner[1:])]
    if all(isinstance(ups, float) and ups > 0 for _, ups in windows):
        off = sum(k * 0.005 / ups ** 2 for k, ups in windows)
        if off < 1.0:
            return sum(k / ups for k, ups in windows) / n
    span = inner[-1]["wall"] - inner[0]["wall"]
    if span <= 0:
        raise BenchError(f"{log_path}: the {n} updates after update {SKIP} took under fairseq's wall-clock second "
                         "and no ups were logged: time more updates (--updates)")
    return span / n


def time_one(grid, cond, seed, save, updates):
    argv, env = command(grid, cond, seed, save, updates)
    if subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode:
        raise BenchError(f"{cond.name} seed {seed} failed, see {save}/train.log")
    return seconds_per_update(os.path.join(save, "train.log"))


def summary(rounds):
    """``rounds``: {variant: {seed: seconds per update}}, the reference first. Per variant: the median seconds,
    the median over seeds of its ratio to the reference's seconds at the same seed, and the rounds."""
    ref = next(iter(rounds.values()))
    return {n: {"s_per_update": statistics.median(t.values()),
                "ratio_to_plain": statistics.median(t[s] / ref[s] for s in t), "rounds": t}
            for n, t in rounds.items()}


def add_rounds(old, new):
    """The rounds of an earlier bench's JSON (``old``: its "variants") and of this one, as one {variant: {seed: s}};
    BenchError unless they time the same variants at different seeds."""
    if list(old) != list(new):
        raise BenchError(f"the earlier rounds time {', '.join(old)}, these {', '.join(new)}")
    both = {n: {int(s): t for s, t in old[n]["rounds"].items()} for n in old}
    ref = next(iter(new))
    again = sorted(set(both[ref]) & set(new[ref]))
    if again:
        raise BenchError(f"seeds {again} were timed already")
    return {n: {**both[n], **new[n]} for n in new}
