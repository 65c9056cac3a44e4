"""The grid file: which recipe, which data, which metric, which seeds, which conditions, which baseline.

    name: rte-minilm                      # optional; default: the file's name
    pipeline: superglue                   # superglue | squad2 | gigaword (examples/<pipeline>/*.sh)
    recipe: minilm                        # train.sh's RECIPE
    data: data-bin/rte-minilm             # train.sh's DATA_BIN (relative paths: from the working folder)
    out: experiments/rte-minilm           # optional; default experiments/<name>
    checkpoint: checkpoint_last.pt        # optional; the checkpoint evaluate.sh scores
    metric: {key: accuracy, split: valid, goal: max}   # or just `accuracy`; dots for nesting: rouge1.f
    seeds: [1, 2, 3, 4, 5]                # each run gets --seed S (last, so it wins)
    env: {EPOCHS: 5}                      # optional, for every run
    flags: [--max-update, 100]            # optional extra fairseq-train flags for every run (or one string)
    eval_flags: [--cpu]                   # optional extra evaluate.sh flags
    conditions:
      - {name: plain-lr1e-4, algo: plain, env: {LR: 1e-4}}
      - {name: dotprod-b0.1, algo: dotprod, env: {DPREG_LAMBDA: 0.1}, flags: [--dpreg-interval, 4]}
    alignment: {pairs: 16, subset: valid}   # optional: gradient alignment of each run's checkpoint
                                          #     (scripts/grad_alignment.py; also batch_size, max_tokens)
    baseline: plain-lr1e-4                # or {best_of: [plain-lr5e-5, plain-lr1e-4], select_on: {split: valid,
                                          #     key: accuracy}} or select_on: {log: valid_loss, goal: min}
    secondary:                            # optional: more paired comparisons, reported apart and uncorrected
      - {against: reptile-a0.01}          #     (not in Holm's m); conditions default to every dotprod one
      - {against: fomaml-a0.01, conditions: [dotprod-b0.1]}
    resume_training: true                 # optional (default false): an interrupted training continues from
                                          #     its checkpoint_last.pt (only for recipes that resume from it)
    keep_checkpoints: [checkpoint_best.pt]   # optional (default: all kept): once a run finished ok, the other
                                          #     *.pt files of its SAVE_DIR are deleted; must hold `checkpoint`

``select_on`` defaults to the metric; a ``log`` key is read from the last validation record of fairseq's
train.log. Every mistake stops here with the file, the key and what is wrong.
"""
import json
import os
import re
import shlex
from dataclasses import dataclass, field

import yaml

PIPELINES = ("superglue", "squad2", "gigaword")
ALGOS = ("plain", "dotprod", "reptile", "fomaml")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
TOP_KEYS = {"name", "pipeline", "recipe", "data", "out", "checkpoint", "metric", "seeds", "env", "flags",
            "eval_flags", "conditions", "baseline", "alignment", "secondary", "resume_training",
            "keep_checkpoints"}
ALIGNMENT_KEYS = {"pairs": 16, "subset": "valid", "batch_size": None, "max_tokens": None}


class GridError(ValueError):
    pass


@dataclass
class Metric:
    key: str           # dotted path into evaluate.sh's JSON, or (log=True) a key of train.log's last valid record
    split: str = ""    # the split evaluate.sh scores; "" for a log key
    goal: str = "max"
    log: bool = False

    def label(self):
        return f"{self.key} (train.log, last validation)" if self.log else f"{self.key} on {self.split}"


@dataclass
class Condition:
    name: str
    algo: str
    env: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)


@dataclass
class Grid:
    path: str
    name: str
    pipeline: str
    recipe: str
    data: str
    out: str
    checkpoint: str
    metric: Metric
    seeds: list
    env: dict
    flags: list
    eval_flags: list
    conditions: list
    candidates: list   # the baseline's candidates (one name, or best_of)
    select_on: Metric  # how the best candidate is chosen
    alignment: dict = None  # scripts/grad_alignment.py options for each run's checkpoint, or None
    secondary: list = field(default_factory=list)  # [(condition, against)]: uncorrected further comparisons
    resume_training: bool = False  # an interrupted training step continues from SAVE_DIR/checkpoint_last.pt
    keep_checkpoints: list = None  # the *.pt files of SAVE_DIR kept once a run finished ok; None: all of them

    def condition(self, name):
        return next(c for c in self.conditions if c.name == name)

    def eval_splits(self, condition):
        """The splits evaluate.sh scores for a run of ``condition``, in a fixed order: the metric's, and the
        baseline's selection split for the baseline's candidates only (nothing else is read from it)."""
        metrics = (self.metric, self.select_on) if condition in self.candidates else (self.metric,)
        return sorted({m.split for m in metrics if not m.log})


def load_grid(path, out=None):
    """Read and check the grid file ``path``; ``out`` overrides its output folder."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise GridError(f"{path}: cannot read the grid file: {e.strerror or e}") from None
    try:
        raw = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise GridError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {e}") from None
    return parse_grid(raw, path, out)


def parse_grid(raw, path="grid", out=None):
    def err(key, msg):
        raise GridError(f"{path}: {key}: {msg}")

    if not isinstance(raw, dict):
        raise GridError(f"{path}: the grid must be a mapping of keys (pipeline, recipe, data, ...)")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        err(unknown[0], f"unknown key (the keys are {', '.join(sorted(TOP_KEYS))})")
    for key in ("pipeline", "recipe", "data", "metric", "seeds", "conditions"):
        if raw.get(key) in (None, "", []):
            err(key, "missing (required)")
    if raw["pipeline"] not in PIPELINES:
        err("pipeline", f"{raw['pipeline']!r} is not one of {', '.join(PIPELINES)}")
    name = str(raw.get("name") or os.path.splitext(os.path.basename(path))[0])
    if not NAME.match(name):
        err("name", f"{name!r}: use letters, digits, '.', '_', '+', '-'")

    metric = _metric(raw["metric"], "metric", err, allow_log=False)
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        err("seeds", "a list of whole numbers, e.g. [1, 2, 3]")
    if len(set(seeds)) != len(seeds):
        err("seeds", "a seed is listed twice")

    conditions = raw["conditions"]
    if not isinstance(conditions, list):
        err("conditions", "a list of {name, algo, env, flags}")
    conds = [_condition(c, f"conditions[{i}]", err) for i, c in enumerate(conditions)]
    names = [c.name for c in conds]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        err("conditions", f"the name {dup!r} is used twice")

    candidates, select_on = _baseline(raw.get("baseline"), conds, metric, err)
    checkpoint = _str(raw.get("checkpoint", "checkpoint_last.pt"), "checkpoint", err)
    return Grid(
        path=path, name=name, pipeline=raw["pipeline"], recipe=_str(raw["recipe"], "recipe", err),
        data=os.path.abspath(_str(raw["data"], "data", err)),
        out=os.path.abspath(out or str(raw.get("out") or os.path.join("experiments", name))),
        checkpoint=checkpoint, metric=metric,
        seeds=seeds, env=_env(raw.get("env"), "env", err), flags=_flags(raw.get("flags"), "flags", err),
        eval_flags=_flags(raw.get("eval_flags"), "eval_flags", err), conditions=conds,
        candidates=candidates, select_on=select_on, alignment=_alignment(raw.get("alignment"), err),
        secondary=_secondary(raw.get("secondary"), conds, err),
        resume_training=_bool(raw.get("resume_training", False), "resume_training", err),
        keep_checkpoints=_keep_checkpoints(raw.get("keep_checkpoints"), checkpoint, err),
    )


def _keep_checkpoints(value, checkpoint, err):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v and "/" not in v for v in value):
        err("keep_checkpoints", "a list of checkpoint file names of SAVE_DIR, e.g. [checkpoint_best.pt]")
    if checkpoint not in value:
        err("keep_checkpoints", f"must keep {checkpoint} (checkpoint: the one scored; a step added to the grid later "
                                "runs on it)")
    return value


def _bool(value, key, err):
    if not isinstance(value, bool):
        err(key, f"true or false (got {value!r})")
    return value


def _secondary(value, conds, err):
    """[(condition, against)] of the ``secondary:`` list, in its order."""
    if value is None:
        return []
    if not isinstance(value, list):
        err("secondary", "a list of {against: NAME, conditions: [NAMES]}")
    names, out = [c.name for c in conds], []
    for i, item in enumerate(value):
        key = f"secondary[{i}]"
        if not isinstance(item, dict):
            err(key, "a mapping {against: NAME, conditions: [NAMES]}")
        bad = sorted(set(item) - {"against", "conditions"})
        if bad:
            err(f"{key}.{bad[0]}", "unknown key (allowed: against, conditions)")
        against = item.get("against")
        if against not in names:
            err(f"{key}.against", f"{against!r} is not a condition (conditions: {', '.join(names)})")
        these = item.get("conditions", [c.name for c in conds if c.algo == "dotprod" and c.name != against])
        if not isinstance(these, list) or not these:
            err(f"{key}.conditions", "a non-empty list of condition names (default: every dotprod condition)")
        for n in these:
            if n not in names or n == against:
                err(f"{key}.conditions", f"{n!r}: not a condition other than {against!r}")
            if (n, against) in out:
                err(f"{key}.conditions", f"{n} against {against} is listed twice")
            out.append((n, against))
    return out


def _alignment(value, err):
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        err("alignment", "true, or a mapping {pairs, subset, batch_size, max_tokens}")
    bad = sorted(set(value) - set(ALIGNMENT_KEYS))
    if bad:
        err(f"alignment.{bad[0]}", f"unknown key (allowed: {', '.join(sorted(ALIGNMENT_KEYS))})")
    out = dict(ALIGNMENT_KEYS, **value)
    for key in ("pairs", "batch_size", "max_tokens"):
        v = out[key]
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            err(f"alignment.{key}", f"a whole number >= 1 (got {v!r})")
    out["subset"] = _str(out["subset"], "alignment.subset", err)
    return out


def _str(value, key, err):
    if not isinstance(value, str) or not value:
        err(key, f"a non-empty string (got {value!r})")
    return value


def _env(value, key, err):
    if value is None:
        return {}
    if not isinstance(value, dict):
        err(key, "a mapping NAME: value")
    for k, v in value.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(k)):
            err(key, f"{k!r} is not an environment variable name")
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            err(f"{key}.{k}", f"a string or a number (got {v!r})")
    return {str(k): str(v) for k, v in value.items()}


def _flags(value, key, err):
    if value is None:
        return []
    flags = shlex.split(value) if isinstance(value, str) else value
    if not isinstance(flags, list) or not all(isinstance(f, (str, int, float)) for f in flags):
        err(key, "a list of command-line words, or one string")
    flags = [str(f) for f in flags]
    if any(f == "--seed" or f.startswith("--seed=") for f in flags):
        err(key, "--seed is the runner's (seeds: ...); remove it here")
    return flags


def _metric(value, key, err, allow_log):
    if isinstance(value, str):
        value = {"key": value}
    if not isinstance(value, dict):
        err(key, "a metric key (e.g. accuracy) or {key, split, goal}")
    allowed = {"key", "split", "goal"} | ({"log"} if allow_log else set())
    bad = sorted(set(value) - allowed)
    if bad:
        err(f"{key}.{bad[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
    goal = value.get("goal", "max")
    if goal not in ("max", "min"):
        err(f"{key}.goal", "max or min")
    if "log" in value:
        if "key" in value or "split" in value:
            err(key, "give either log: KEY (train.log) or key/split (evaluate.sh), not both")
        return Metric(key=_str(value["log"], f"{key}.log", err), goal=goal, log=True)
    return Metric(key=_str(value.get("key"), f"{key}.key", err),
                  split=_str(value.get("split", "valid"), f"{key}.split", err), goal=goal)


def _condition(c, key, err):
    if not isinstance(c, dict):
        err(key, "a mapping {name, algo, env, flags}")
    bad = sorted(set(c) - {"name", "algo", "env", "flags"})
    if bad:
        err(f"{key}.{bad[0]}", "unknown key (allowed: name, algo, env, flags)")
    name = c.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        err(f"{key}.name", f"{name!r}: a name of letters, digits, '.', '_', '+', '-'")
    if c.get("algo") not in ALGOS:
        err(f"{key}.algo", f"{c.get('algo')!r} is not one of {', '.join(ALGOS)}")
    return Condition(name=name, algo=c["algo"], env=_env(c.get("env"), f"{key}.env", err),
                     flags=_flags(c.get("flags"), f"{key}.flags", err))


def _baseline(value, conds, metric, err):
    names = [c.name for c in conds]
    if value is None:
        plain = [c.name for c in conds if c.algo == "plain"]
        if len(plain) != 1:
            err("baseline", f"missing: name the plain reference (a condition, or best_of: [...]); plain "
                            f"conditions: {plain or 'none'}")
        value = plain[0]
    if isinstance(value, str):
        value = {"best_of": [value]}
    if not isinstance(value, dict):
        err("baseline", "a condition name or {best_of: [names], select_on: {...}}")
    bad = sorted(set(value) - {"best_of", "select_on"})
    if bad:
        err(f"baseline.{bad[0]}", "unknown key (allowed: best_of, select_on)")
    cands = value.get("best_of")
    if isinstance(cands, str):
        cands = [cands]
    if not isinstance(cands, list) or not cands:
        err("baseline.best_of", "a non-empty list of condition names")
    for n in cands:
        if n not in names:
            err("baseline.best_of", f"{n!r} is not a condition (conditions: {', '.join(names)})")
    if len(set(cands)) != len(cands):
        err("baseline.best_of", "a name is listed twice")
    if len(cands) == len(conds):
        err("baseline.best_of", "every condition is a baseline candidate: nothing is left to compare")
    sel = value.get("select_on")
    select_on = metric if sel is None else _metric(sel, "baseline.select_on", err, allow_log=True)
    if sel is not None and "goal" not in sel and not select_on.log:
        select_on.goal = metric.goal
    if sel is not None and select_on.log and "goal" not in sel:
        err("baseline.select_on.goal", "give max or min for a train.log key")
    return list(cands), select_on
