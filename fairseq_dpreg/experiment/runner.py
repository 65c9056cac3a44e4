"""The runs of a grid (conditions x seeds) through the project's recipes, N at a time, resumable.

One run is ``examples/<pipeline>/train.sh RECIPE ALGO DATA OUT/runs/<condition>/seed<S>/ckpt [grid flags]
[condition flags] --seed S`` with the grid's and the condition's environment, then ``evaluate.sh`` on each
split the grid needs. Its folder OUT/runs/<condition>/seed<S>/ holds ckpt/ (SAVE_DIR, with train.log),
the logs of each step (train.out, eval-<split>.out) and, once done, result.json: status ok or failed, the
metrics, the training fit read from train.log, and every step's command line, environment, exit status,
wall time and log. result.json is written atomically, last: a run is finished exactly when it exists.

Resume: runs with a result.json are skipped (failed ones too, unless retry_failed). A run folder without one
is what an interrupted attempt left; its marker (``.run``) lists the steps it finished, which are kept when their
command line and environment are the run's now and their outputs are there (a stop during the evaluation does not
cost a new training). The step it was stopped in starts again; a stopped training starts again from nothing, so
that its wall time, log and fit columns describe one uninterrupted training (the minilm and roberta recipes of
superglue and squad2 restart from the pretrained weights anyway), unless the grid sets ``resume_training``: then it
continues from its SAVE_DIR/checkpoint_last.pt (train.sh of the gigaword cpu-small, minilm-warm and
transformer-base recipes and the cpu-tiny ones resume from it, fairseq's behaviour: the same data order and
dropout as an uninterrupted run, since fairseq seeds each update by its number), with its logs appended and its
wall time the sum of its attempts (left out of the report's time columns: it counts the updates redone since the
checkpoint; one stopped after fairseq had ended it is not trained again: train.sh sees that its checkpoint_last.pt
reached --max-update). An interruption (SIGINT, SIGTERM, SIGHUP) stops
the runner's training processes and records nothing for the runs in flight but their marker; a runner killed
outright (kill -9) takes them with it too, through the guard each step runs under (:mod:`.guard`), and its run
folders start again from nothing, or from the steps they had finished. SIGUSR1 drains instead: the
runs under way finish (every step), no new one starts, and the runs left stay pending for the next invocation
(before a machine's allocation ends: ``kill -USR1 PID`` one run-length ahead). OUT/events.jsonl lists every
start and end, across invocations. A lock (OUT/.lock) keeps a second runner off the same folder.

Retry (``--retry-failed``): a failed run starts again at the step that failed when every step before it
finished (exit status 0) with the same command line and environment as now and left its outputs (the
checkpoint, the metrics files): a failed evaluation or alignment step does not cost a new training. Its
result.json keeps the earlier steps' records and says ``resumed`` (from which step, the previous status and
error); until the new result.json replaces it, the old one stays. A run that failed in training starts from
nothing. In the same way, a run that finished before the grid gained a step (``alignment`` added later) runs
that step alone on the next invocation; a finished run whose commands differ from the grid's now is left as it is,
unless ``--rerun-changed``: then the steps after its training run again from the first that changed (another
``checkpoint`` scored, other ``eval_flags`` or alignment options), on the training it has, and its result.json keeps
the earlier metrics (``resumed.previous_metrics``). A finished training is never run again: a run whose training
command changed is left as it is, and said so.

Disk: with ``keep_checkpoints`` a run that finished ok keeps only those checkpoint files (the scored one among
them), the others are deleted after its result.json is written and listed there (``checkpoints_deleted``);
failed and interrupted runs keep everything (a retry or a continued training needs them).
"""
import datetime
import fcntl
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

from ..atomic import write_json_atomic
from . import logs
from .grid import GridError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULT = "result.json"
MARKER = ".run"


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def python():
    """The interpreter of the runner's own Python steps, chosen as the recipes choose theirs (examples/common.sh):
    $PYTHON, else the project's .venv/bin/python, else the one running the runner."""
    venv = os.path.join(REPO, ".venv", "bin", "python")
    return os.environ.get("PYTHON") or (venv if os.access(venv, os.X_OK) else sys.executable)


FIND_TORCH_AND_FAIRSEQ = """import importlib.util, sys
missing = [m for m in ("torch", "fairseq") if importlib.util.find_spec(m) is None]
sys.exit(f"ModuleNotFoundError: No module named {missing[0]!r}" if missing else 0)
"""


def check_python(py):
    """Stop before any run when ``py`` cannot run the alignment step (it needs torch and fairseq). Found, not
    imported: importing them takes seconds, at every invocation of the runner."""
    try:
        p = subprocess.run([py, "-c", FIND_TORCH_AND_FAIRSEQ], capture_output=True, text=True)
        why = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1] if p.returncode else None
    except OSError as e:
        why = str(e)
    if why:
        raise RuntimeError(f"alignment: {py} cannot import torch and fairseq ({why}); run `make install`, or set "
                           f"PYTHON to the interpreter that has them")


def lock_folder(out):
    """Hold OUT/.lock (an open file; closing it lets go) so that one runner at a time writes in OUT; RuntimeError
    when another holds it. The holder's process id is written in it (``kill -USR1 $(cat OUT/.lock)`` drains)."""
    os.makedirs(out, exist_ok=True)
    lock = open(os.path.join(out, ".lock"), "a+")  # not truncated before the lock is ours
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RuntimeError(f"{out}: another experiment runner is working in this folder") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def attempt_left(rdir):
    """True when ``rdir`` holds what an interrupted attempt of the runner left (delete it before the run starts
    again); False when there is no such folder. RuntimeError when it exists but the runner did not make it."""
    if not os.path.exists(rdir):
        return False
    if not os.path.exists(os.path.join(rdir, MARKER)):
        raise RuntimeError(f"{rdir}: exists but was not made by the runner; move it away")
    return True


def run_dir(grid, condition, seed):
    return os.path.join(grid.out, "runs", condition, f"seed{seed}")


def load_result(grid, condition, seed):
    """The run's result.json as a dict, or None when the run is not finished."""
    path = os.path.join(run_dir(grid, condition, seed), RESULT)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def plan(grid, only=None, seeds=None):
    """Every (condition, seed), seed by seed, so that an interrupted grid has whole pairs; ``only`` (condition
    names) and ``seeds`` keep a part of the grid (``select`` checks them)."""
    return [(c, s) for s in grid.seeds for c in grid.conditions
            if (only is None or c.name in only) and (seeds is None or s in seeds)]


def select(grid, only=None, seeds=None, only_flag="--only"):
    """Check a part of the grid given by the user (``only_flag``'s names, --seeds numbers): ``GridError`` names
    the flag and what the grid does not have."""
    names = [c.name for c in grid.conditions]
    unknown = [n for n in only or () if n not in names]
    if unknown:
        raise GridError(f"{only_flag} {','.join(unknown)}: not a condition of {grid.path} ({', '.join(names)})")
    missing = [s for s in seeds or () if s not in grid.seeds]
    if missing:
        raise GridError(f"--seeds {','.join(map(str, missing))}: not a seed of {grid.path} "
                        f"({', '.join(map(str, grid.seeds))})")


def metric_value(metrics, key):
    """``metrics[a][b]`` for the key ``a.b`` (evaluate.sh's JSON); KeyError naming the keys there are."""
    value = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            have = ", ".join(sorted(value)) if isinstance(value, dict) else type(value).__name__
            raise KeyError(f"no {part!r} in the metrics (keys: {have})")
        value = value[part]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise KeyError(f"{key} is {value!r}, not a number")
    return float(value)


def steps(grid, cond, seed):
    """[(name, argv, log, metrics file or None)]: training, evaluate.sh on each split, then (``alignment:``)
    scripts/grad_alignment.py on the same checkpoint."""
    rdir = run_dir(grid, cond.name, seed)
    save = os.path.join(rdir, "ckpt")
    ex = os.path.join(REPO, "examples", grid.pipeline)
    out = [("train", ["bash", os.path.join(ex, "train.sh"), grid.recipe, cond.algo, grid.data, save,
                      *grid.flags, *cond.flags, "--seed", str(seed)], os.path.join(rdir, "train.out"), None)]
    ckpt = os.path.join(save, grid.checkpoint)
    for split in grid.eval_splits(cond.name):
        log = os.path.join(rdir, f"eval-{split}.out")
        if grid.pipeline == "gigaword":
            raw = os.path.join(grid.data, "raw", split)
            argv = [ckpt, raw + ".src", raw + ".tgt", "--split", split]
            metrics = os.path.join(save, f"rouge.{split}.json")
        else:
            edir = os.path.join(rdir, f"eval-{split}")
            argv = [ckpt, edir, "--split", split]
            metrics = os.path.join(edir, f"{split}.metrics.json")
        out.append((f"evaluate {split}", ["bash", os.path.join(ex, "evaluate.sh"), grid.data, *argv,
                                          *grid.eval_flags], log, metrics))
    a = grid.alignment
    if a:  # the mean cosine of held-out gradients at the scored checkpoint -> metrics["alignment"]
        metrics = os.path.join(rdir, "alignment.json")
        argv = [python(), os.path.join(REPO, "scripts", "grad_alignment.py"), ckpt, grid.data,
                "--subset", a["subset"], "--pairs", str(a["pairs"]), "--seed", str(seed), "--json", metrics]
        for key in ("batch_size", "max_tokens"):
            if a[key]:
                argv += [f"--{key.replace('_', '-')}", str(a[key])]
        out.append(("alignment", argv, os.path.join(rdir, "alignment.out"), metrics))
    return out


def env_overrides(grid, cond, threads=None, gpu=None):
    """The variables a run sets: OMP/MKL threads (unless the grid sets them), the grid's env, the condition's
    env (wins), CUDA_VISIBLE_DEVICES of its job's GPU."""
    env = {}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(grid.env)
    env.update(cond.env)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return env


def shell_line(env, argv):
    return " ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] + [shlex.quote(a) for a in argv])


DRAINED = 128 + signal.SIGUSR1  # Runner.run's status when a drain (SIGUSR1) left runs not started


class Runner:
    def __init__(self, grid, jobs=1, gpus=None, retry_failed=False, echo=print, only=None, seeds=None,
                 rerun_changed=False):
        select(grid, only, seeds)
        self.grid, self.gpus, self.retry_failed, self.echo = grid, gpus, retry_failed, echo
        self.rerun_changed = rerun_changed
        self.only, self.seeds = only, seeds
        self.jobs = len(gpus) if gpus else max(1, jobs)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.threads = max(1, cpus // self.jobs)
        self.stopping = None  # the signal that stopped the runner
        self.draining = False  # SIGUSR1: no run starts after it
        self._children = set()
        self._lock = threading.Lock()
        self._errors = []

    def pending(self):
        """[(condition, seed)] to run: not finished, failed (with retry_failed), or finished before the grid gained a
        step or (rerun_changed) with other steps after its training (``_kept``)."""
        return self._survey()[0]

    def _survey(self):
        """(pending(), with rerun_changed a line for each finished run whose training command is not the grid's
        now: never trained again)."""
        todo, changed = [], []
        for cond, seed in plan(self.grid, self.only, self.seeds):
            res = load_result(self.grid, cond.name, seed)
            if res is None or (self.retry_failed if res.get("status") != "ok" else bool(self._kept(cond, seed, res))):
                todo.append((cond, seed))
            elif res.get("status") == "ok" and self.rerun_changed and not _same_step(
                    (res.get("steps") or [{}])[0], "train", steps(self.grid, cond, seed)[0][1],
                    env_overrides(self.grid, cond)):
                changed.append(f"{cond.name} seed {seed}: finished with another training command than the grid's "
                               "now; left as it is (--rerun-changed never trains a finished run again: use another "
                               "--out)")
        return todo, changed

    def _kept(self, cond, seed, res):
        return _reusable_steps(res, steps(self.grid, cond, seed), env_overrides(self.grid, cond), self.grid.checkpoint,
                               self.rerun_changed)

    def dry_run(self):
        """Print the commands of every run not finished yet (nothing is run or written)."""
        todo, changed = self._survey()
        for line in changed:
            self.echo(line)
        self.echo(f"# {self.grid.path}: {len(plan(self.grid, self.only, self.seeds)) - len(todo)} runs finished, "
                  f"{len(todo)} to run, "
                  f"{self.jobs} at a time")
        for i, (cond, seed) in enumerate(todo):
            gpu = self.gpus[i % self.jobs] if self.gpus else None
            env = env_overrides(self.grid, cond, self.threads, gpu)
            _, kept, stops = self._resumption(cond, seed)
            self.echo(f"# {cond.name} seed {seed} -> {run_dir(self.grid, cond.name, seed)}"
                      + (f" (from step {steps(self.grid, cond, seed)[len(kept)][0]}: the earlier ones are kept)"
                         if kept else "")
                      + (" (training continues from its checkpoint_last.pt)" if stops else ""))
            for _, argv, log, _ in steps(self.grid, cond, seed)[len(kept):]:
                self.echo(shell_line(env, argv) + f" > {shlex.quote(log)} 2>&1")

    def run(self):
        """Run every pending run; returns 0, or 128 + the signal number when interrupted."""
        lock = lock_folder(self.grid.out)
        try:
            return self._run_locked(lock)
        finally:
            lock.close()

    def _run_locked(self, lock):
        pending, changed = self._survey()  # read once, under the lock: no other runner changes the runs after it
        if self.grid.alignment and pending:
            check_python(python())
        for line in changed:
            self.echo(line)
        todo = queue.Queue()
        for item in pending:
            todo.put(item)
        self.echo(f"{self.grid.name}: {todo.qsize()} runs to do, {self.jobs} at a time "
                  f"({'GPU ' + ','.join(self.gpus) if self.gpus else f'{self.threads} CPU threads'} each); runner "
                  f"pid {os.getpid()} (in {lock.name}: kill -USR1 drains)")
        old = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._drain)
        try:
            workers = [threading.Thread(target=self._worker, args=(todo, slot), daemon=True)
                       for slot in range(self.jobs)]
            for w in workers:
                w.start()
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=0.2)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if self._errors:
            raise self._errors[0]
        if self.stopping:
            self.echo(f"interrupted ({signal.Signals(self.stopping).name}): rerun the same command to resume")
            return 128 + self.stopping
        if todo.qsize():
            self.echo(f"drained (SIGUSR1): {todo.qsize()} runs not started; rerun the same command to run them")
            return DRAINED
        return 0

    # -- internals ----------------------------------------------------------------------------------------
    def _stop(self, signum, frame):
        with self._lock:
            self.stopping = signum
            children = list(self._children)
        for p in children:
            _kill(p)

    def _drain(self, signum, frame):
        if not self.draining:
            self.draining = True
            self.echo("SIGUSR1: the runs under way finish, no new run starts")

    def _worker(self, todo, slot):
        gpu = self.gpus[slot] if self.gpus else None
        while not self.stopping and not self.draining:
            try:
                cond, seed = todo.get_nowait()
            except queue.Empty:
                return
            try:
                self._run_one(cond, seed, env_overrides(self.grid, cond, self.threads, gpu))
            except Exception as e:  # a runner error (not a failed run): stop this job, re-raised by run()
                self._errors.append(e)
                return

    def _event(self, event, cond, seed, **extra):
        rec = dict(event=event, condition=cond.name, seed=seed, time=now(), pid=os.getpid(), **extra)
        with self._lock, open(os.path.join(self.grid.out, "events.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def _run_one(self, cond, seed, overrides):
        rdir = run_dir(self.grid, cond.name, seed)
        plan_ = steps(self.grid, cond, seed)
        prior, kept, stops = self._resumption(cond, seed)
        if not kept and not stops and attempt_left(rdir):  # nothing to keep: start from nothing
            shutil.rmtree(rdir)
        os.makedirs(rdir, exist_ok=True)
        started, t0 = now(), time.monotonic()
        env = dict(os.environ, **overrides)
        result = {"condition": cond.name, "algo": cond.algo, "seed": seed, "status": "ok", "error": None,
                  "metrics": {}, "fit": {}, "steps": [], "started": started,
                  "save_dir": os.path.join(rdir, "ckpt"), "train_log": os.path.join(rdir, "ckpt", "train.log")}
        if kept or stops:
            result.update(started=prior["started"], resumed={
                "from": plan_[len(kept)][0], "at": started, "previous_status": prior.get("status", "interrupted"),
                "previous_error": prior.get("error")})
            if prior.get("status") == "ok":  # a finished run given a new step or (rerun_changed) scored again
                result["resumed"]["previous_metrics"] = prior.get("metrics")
            self._event("resume", cond, seed, step=plan_[len(kept)][0])
        else:
            self._event("start", cond, seed)
        marker = {"condition": cond.name, "seed": seed, "started": result["started"], "save_dir": result["save_dir"],
                  "steps": list(kept), "interrupted": stops}
        write_json_atomic(os.path.join(rdir, MARKER), marker)
        for i, (name, argv, log, metrics_file) in enumerate(plan_):
            if i < len(kept):  # finished by the earlier attempt: its record and outputs are kept
                result["steps"].append(kept[i])
                rc = 0
            else:
                rc, wall = self._exec(argv, env, log, append=bool(stops) and name == "train")
                record = {"name": name, "command": shell_line(overrides, argv), "argv": argv, "env": overrides,
                          "rc": rc, "wall_s": round(wall, 3), "log": log}
                if name == "train" and stops:  # one training in several attempts: their wall times add up
                    record.update(attempts=[st["wall_s"] for st in stops] + [record["wall_s"]],
                                  wall_s=round(sum(st["wall_s"] for st in stops) + wall, 3))
                if rc == 0:  # finished (perhaps as the stop came): kept by the next attempt
                    marker.update(steps=[*result["steps"], record], interrupted=[])
                    write_json_atomic(os.path.join(rdir, MARKER), marker)
                if self.stopping:
                    if rc != 0 and name == "train":  # the stopped training: it may continue from its checkpoint
                        marker["interrupted"] = [*stops, {**record, "at": now()}]
                        write_json_atomic(os.path.join(rdir, MARKER), marker)
                    self._event("interrupted", cond, seed, step=name)
                    return
                result["steps"].append(record)
            if rc != 0:
                result.update(status="failed", error=f"{name} exited with status {rc}: {_tail(log)} (log: {log})")
                break
            if metrics_file:
                split = name.split()[-1]
                try:
                    with open(metrics_file, encoding="utf-8") as f:
                        result["metrics"][split] = json.load(f)
                    for m in (self.grid.metric, self.grid.select_on):
                        if not m.log and m.split == split:
                            metric_value(result["metrics"][split], m.key)
                except (OSError, ValueError, KeyError) as e:
                    msg = e.args[0] if isinstance(e, KeyError) else str(e)
                    result.update(status="failed", error=f"{name}: {metrics_file}: {msg}")
                    break
        result["fit"] = logs.final_fit(logs.read_log(result["train_log"]))
        if result["status"] == "ok" and self.grid.select_on.log and \
                not isinstance(result["fit"]["last_valid"].get(self.grid.select_on.key), float):
            result.update(status="failed", error=f"{result['train_log']}: no {self.grid.select_on.key} in the last "
                                                 "validation record (baseline.select_on.log)")
        earlier = sum(st["wall_s"] for st in kept) + sum(st["wall_s"] for st in stops)
        result.update(finished=now(), wall_s=round(earlier + time.monotonic() - t0, 3))
        deleted = self._unkept_checkpoints(result)
        if deleted:
            result["checkpoints_deleted"] = deleted
        write_json_atomic(os.path.join(rdir, RESULT), result)
        for name in deleted:  # after the result: a stop here leaves files, never a run without its result
            os.remove(os.path.join(result["save_dir"], name))
        self._event(result["status"], cond, seed, wall_s=result["wall_s"])
        self.echo(f"{cond.name} seed {seed}: {result['status']} in {result['wall_s']:.0f} s"
                  + (f" (resumed at {result['resumed']['from']}: {time.monotonic() - t0:.0f} s now)"
                     if kept or stops else "")
                  + (f" ({result['error']})" if result["error"] else ""))

    def _unkept_checkpoints(self, result):
        """The checkpoint files (*.pt) of a run finished ok that the grid's keep_checkpoints does not keep."""
        keep, save = self.grid.keep_checkpoints, result["save_dir"]
        if keep is None or result["status"] != "ok" or not os.path.isdir(save):
            return []
        return sorted(n for n in os.listdir(save) if n.endswith(".pt") and n not in keep)

    def _resumption(self, cond, seed):
        """(prior record, kept step records, interrupted training attempts) for a run about to start: a failed
        or finished run's result.json and the steps kept from it (``_kept``), or what an interrupted attempt left
        in its folder, the steps it finished and (``resume_training``) the training it was stopped in, which then
        continues from its checkpoint_last.pt. Nothing is changed."""
        prior = load_result(self.grid, cond.name, seed)
        kept = self._kept(cond, seed, prior)
        if kept or prior is not None or not attempt_left(run_dir(self.grid, cond.name, seed)):
            return prior, kept, []
        prior = _read_marker(run_dir(self.grid, cond.name, seed))
        plan_, overrides = steps(self.grid, cond, seed), env_overrides(self.grid, cond)
        kept = _reusable_steps(prior, plan_, overrides, self.grid.checkpoint)
        return prior, kept, self._continued_training(prior, plan_, overrides, kept)

    def _continued_training(self, prior, plan_, overrides, kept):
        """The records of the interrupted attempts of the training step, when it continues now from its
        checkpoint_last.pt (``resume_training``: train.sh resumes from it): nothing after it finished, the last
        attempt stopped in training with the command line and environment the run has now, the checkpoint there;
        else [] (a training fairseq had already ended continues too: train.sh trains no update past --max-update)."""
        stops = prior.get("interrupted") or []
        name, argv = plan_[0][:2]
        if not self.grid.resume_training or kept or not stops or not _same_step(stops[-1], name, argv, overrides):
            return []
        return stops if os.path.isfile(os.path.join(prior["save_dir"], "checkpoint_last.pt")) else []

    def _exec(self, argv, env, log, append=False):
        t0 = time.monotonic()
        with open(log, "a" if append else "w", encoding="utf-8") as f:
            f.write(f"$ {shell_line({}, argv)}\n")
            f.flush()
            with self._lock:
                if self.stopping:
                    return -1, 0.0
                # the guard stops the step's process group if this runner dies without stopping it (kill -9)
                p = subprocess.Popen([sys.executable, "-m", "fairseq_dpreg.experiment.guard", *argv], stdout=f,
                                     stderr=subprocess.STDOUT, env={**env, "PYTHONPATH": _pythonpath(env)},
                                     start_new_session=True)
                self._children.add(p)
            rc = p.wait()
            with self._lock:
                self._children.discard(p)
        return rc, time.monotonic() - t0


VOLATILE = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")  # not compared: another --jobs or
# --gpus does not change what a step computes


def _same_step(record, name, argv, overrides):
    """True when a step's record was made by the step ``name`` with this command line and environment."""
    def env(e):
        return {k: v for k, v in e.items() if k not in VOLATILE}
    return record.get("name") == name and record.get("argv") == argv and env(record.get("env", {})) == env(overrides)


def _read_marker(rdir):
    """What an interrupted attempt recorded in its folder: the steps it finished and (``interrupted``) the step
    it was stopped in; a marker of an older runner (without them) gives nothing to keep."""
    with open(os.path.join(rdir, MARKER), encoding="utf-8") as f:
        return json.load(f)


def _reusable_steps(old, plan_, overrides, checkpoint, rerun_changed=False):
    """The records of a run's leading steps that a new attempt keeps: finished (exit status 0) with the command
    line and environment the run has now, their outputs still there; [] when there is nothing to keep or nothing
    left to run. ``old`` is a result.json or what an interrupted attempt left in its marker. A failed run keeps
    the steps before the failure (when retried), an interrupted one those it finished; a finished run is
    continued only when every step it ran is kept and the grid now has more (e.g. ``alignment`` added after it
    finished), or (``rerun_changed``) from its first changed step when its training is kept."""
    if not old:
        return []
    kept = []
    for record, (name, argv, _, metrics_file) in zip(old.get("steps", []), plan_):
        if record.get("rc") != 0 or not _same_step(record, name, argv, overrides):
            break
        output = os.path.join(old["save_dir"], checkpoint) if name == "train" else metrics_file
        if not os.path.isfile(output):
            break
        kept.append(record)
    if old.get("status") == "ok" and len(kept) < len(old.get("steps", [])) and not (rerun_changed and kept):
        return []  # finished with other commands (the grid changed): left as it is
    return kept if len(kept) < len(plan_) else []


def _pythonpath(env):
    """The project first on the guard's path, so ``-m fairseq_dpreg...`` finds it from any folder."""
    rest = env.get("PYTHONPATH")
    return REPO + (os.pathsep + rest if rest else "")


def _kill(p):
    """SIGTERM to the child's process group (bash, fairseq, tee), SIGKILL if it is still there after 10 s."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    timer = threading.Timer(10.0, _killpg, (p.pid,))
    timer.daemon = True
    timer.start()


def _killpg(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _tail(log):
    lines = [line.strip() for line in _text(log).splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
