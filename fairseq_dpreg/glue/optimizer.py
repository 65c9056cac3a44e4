"""``dpreg_<name>``: every registered fairseq optimizer, wrapped to carry the regularizer's flags and state.

The wrapper is the base optimizer's own class with a mixin in front (so ``--optimizer dpreg_adam`` accepts all
of adam's flags unchanged and behaves exactly like adam), plus:
- the ``--dpreg-*`` flags (``config.DpregConfig``), validated at start-up;
- the plugin's state (counters, the collapse watch) inside ``state_dict()``, so checkpoints resume it;
- the skip path: an update the task marked as skipped (non-finite pass, runaway term) is not applied.
The passes themselves run in the task (``task.DpregTaskMixin.train_step``), which owns model and sample.
"""
import dataclasses
import logging
import math

import torch
from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY, OPTIMIZER_REGISTRY, register_optimizer

from .config import DpregConfig
from .pairing import StartupError, check_task_for_optimizer

logger = logging.getLogger(__name__)

SKIPPED_BASES = {"composite"}  # a router of param groups to other optimizers: wrap its members instead
FLAGS = {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(DpregConfig) if f.name != "_name"}


def add_dpreg_flags(parser):
    """Add the --dpreg-* flags to an argparse parser that does not have them yet."""
    if not any(FLAGS["dpreg_lambda"] in a.option_strings for a in parser._actions):
        gen_parser_from_dataclass(parser, DpregConfig())


def dpreg_settings(cfg):
    """The --dpreg-* values of an optimizer config (DictConfig, dataclass or Namespace), validated."""
    s = {name: getattr(cfg, name, dataclasses.MISSING) for name in FLAGS}
    defaults = DpregConfig()
    for name, value in s.items():
        if value is dataclasses.MISSING:
            s[name] = getattr(defaults, name)
    s["dpreg_algorithm"] = str(s["dpreg_algorithm"])
    s["dpreg_weighting"] = str(s["dpreg_weighting"])
    s["dpreg_fd"] = str(s["dpreg_fd"])

    def bad(name, why):
        raise ValueError(f"{FLAGS[name]}: {why}, got {s[name]!r}")

    if s["dpreg_algorithm"] not in ("dotprod", "reptile", "fomaml"):
        bad("dpreg_algorithm", "must be dotprod, reptile or fomaml")
    if s["dpreg_weighting"] not in ("relative", "absolute"):
        bad("dpreg_weighting", "must be relative or absolute")
    if s["dpreg_fd"] not in ("central", "forward"):
        bad("dpreg_fd", "must be central or forward")
    if not (math.isfinite(s["dpreg_lambda"]) and s["dpreg_lambda"] >= 0):
        bad("dpreg_lambda", "must be a finite number >= 0")
    if not (math.isfinite(s["dpreg_radius"]) and s["dpreg_radius"] > 0):
        bad("dpreg_radius", "must be a finite number > 0")
    if s["dpreg_algorithm"] != "dotprod":
        if s["dpreg_alpha"] is None:
            bad("dpreg_alpha", f"is required with --dpreg-algorithm {s['dpreg_algorithm']} (the inner SGD step)")
        if not (math.isfinite(s["dpreg_alpha"]) and s["dpreg_alpha"] > 0):
            bad("dpreg_alpha", "must be a finite number > 0")
    if s["dpreg_start_update"] < 0:
        bad("dpreg_start_update", "must be >= 0")
    if s["dpreg_interval"] < 1:
        bad("dpreg_interval", "must be >= 1")
    if not s["dpreg_max_ratio"] > 0:
        bad("dpreg_max_ratio", "must be > 0")
    return s


def new_dpreg_state():
    """The plugin's counters and warning state, as a fresh optimizer holds them (saved in checkpoints as "dpreg")."""
    return {"regularized": 0, "skipped": 0, "fallbacks": 0, "cos_ema": None, "loss_ema": None,
            "collapse_warned": False, "ratio_ema": None, "ratio_warned": False, "skip_notes": 0, "vanish_warned": False}


class DpregOptimizerMixin:
    """Placed in front of a fairseq optimizer class; see the module docstring.

    The skip path, per update: the task marks a regularized update (``dpreg_begin_update``, on every worker,
    whatever its sub-batches were) and poisons the local gradient with NaN when it skips, so that every
    worker sees the skip after the all-reduce. ``clip_grad_norm`` (called once per update by every fairseq
    wrapper, after the all-reduce) then reads and resets that state, and decides:
    - under a loss scaler (``--fp16``, ``--memory-efficient-fp16``, ``--amp``) the non-finite norm goes up
      unchanged: fairseq's own overflow path skips the update, backs the scale off, and retries under amp;
    - without one (fp32, bf16) the norm is reported as 0 and ``step`` leaves parameters and optimizer state
      untouched (fairseq would otherwise stop on a non-finite norm).
    Either way the update counts in ``dpreg_state["skipped"]``, and nothing is left over for the next update,
    whether or not ``step`` is called (fairseq's overflow path and GradScaler never call it).
    """

    def __init__(self, cfg, params, *args, **kwargs):
        try:
            self.dpreg = dpreg_settings(cfg)
        except ValueError as e:
            raise StartupError(str(e)) from None
        if self.dpreg["dpreg_algorithm"] == "dotprod" and self.dpreg["dpreg_alpha"] is not None:
            logger.warning("dpreg: --dpreg-alpha %g is ignored with --dpreg-algorithm dotprod (it is the inner step "
                           "of reptile and fomaml; dotprod's knobs are --dpreg-lambda and --dpreg-radius)",
                           self.dpreg["dpreg_alpha"])
        check_task_for_optimizer(cfg, type(self).__name__)
        super().__init__(cfg, params, *args, **kwargs)
        self.dpreg_state = new_dpreg_state()
        self._dpreg_active = False  # this update is a regularized one (set by the task, read by clip_grad_norm)
        self._dpreg_skip = False  # set by clip_grad_norm, read by step, for the update in progress
        self.dpreg_loss_scaler = False  # a fairseq wrapper above us scales the loss (set by the task)

    @classmethod
    def add_args(cls, parser):
        """The base optimizer's flags, then the --dpreg-* flags unless the task has added them already (a
        *_dpreg task adds them, first, so that a plain --optimizer meets its start-up message, not argparse's
        "unrecognized arguments")."""
        if cls._dpreg_base_dataclass is not None:
            gen_parser_from_dataclass(parser, cls._dpreg_base_dataclass())
        else:  # a legacy (argparse) base optimizer
            super().add_args(parser)
        add_dpreg_flags(parser)

    def dpreg_reg_scale(self, update_num):
        """None for a plain update, else the factor on the regularizing term (the lazy interval k)."""
        d = self.dpreg
        if d["dpreg_algorithm"] == "dotprod" and d["dpreg_lambda"] == 0:
            return None
        if update_num < d["dpreg_start_update"] or (update_num - d["dpreg_start_update"]) % d["dpreg_interval"]:
            return None
        return float(d["dpreg_interval"]) if d["dpreg_algorithm"] == "dotprod" else 1.0

    def dpreg_begin_update(self):
        self._dpreg_active = True

    @staticmethod
    def dpreg_mark_skip(params):
        """Poison the local gradient so that, after the all-reduce, every worker sees the skip."""
        for p in params:
            if p.grad is None:
                p.grad = torch.full_like(p, float("nan"))
            else:
                p.grad.fill_(float("nan"))

    def clip_grad_norm(self, max_norm, aggregate_norm_fn=None):
        norm = super().clip_grad_norm(max_norm, aggregate_norm_fn)
        active, self._dpreg_active, self._dpreg_skip = self._dpreg_active, False, False
        if bool(torch.isfinite(norm).all()) or not (active or self.dpreg_loss_scaler):
            return norm  # a plain update's non-finite norm without a scaler: fairseq stops, as without us
        self.dpreg_state["skipped"] += 1
        if self.dpreg_loss_scaler:
            return norm  # fairseq's overflow path skips it
        self._dpreg_skip = True
        return torch.zeros_like(norm)

    def step(self, closure=None, scale=1.0, groups=None):
        skip, self._dpreg_skip = self._dpreg_skip, False
        if skip:
            logger.warning("dpreg: update skipped (parameters and optimizer state unchanged)")
            return
        return super().step(closure, scale=scale, groups=groups)

    def state_dict(self):
        state = super().state_dict()
        state["dpreg"] = dict(self.dpreg_state)
        return state

    def load_state_dict(self, state_dict, optimizer_overrides=None):
        state_dict = dict(state_dict)
        saved = state_dict.pop("dpreg", None)
        if saved is None:
            logger.warning("dpreg: the optimizer state has no plugin state (a plain checkpoint?): counters restart")
        else:
            self.dpreg_state.update(saved)
        super().load_state_dict(state_dict, optimizer_overrides)


def _wrap(name, base_cls):
    dc = OPTIMIZER_DATACLASS_REGISTRY.get(name)
    cls = type("Dpreg" + base_cls.__name__, (DpregOptimizerMixin, base_cls),
               {"__doc__": f"{name} with the gradient dot-product regularizer's flags and state",
                "_dpreg_base_dataclass": dc})
    if dc is not None:  # legacy (argparse) optimizers get the flags from DpregOptimizerMixin.add_args
        dc = dataclasses.make_dataclass("Dpreg" + dc.__name__, [], bases=(DpregConfig, dc))
    register_optimizer("dpreg_" + name, dataclass=dc)(cls)
    return cls


def register_all():
    for name, base_cls in sorted(OPTIMIZER_REGISTRY.items()):
        if name.startswith("dpreg_") or name in SKIPPED_BASES or ("dpreg_" + name) in OPTIMIZER_REGISTRY:
            continue
        _wrap(name, base_cls)


register_all()
