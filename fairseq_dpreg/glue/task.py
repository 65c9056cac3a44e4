"""``DpregTaskMixin``: runs the regularizer's passes inside ``train_step``; any task becomes regularizable::

    @register_task("my_task_dpreg", dataclass=MyTaskConfig)
    class MyTaskDpreg(DpregTaskMixin, MyTask):
        pass
"""
import contextlib
import logging

import torch
import torch.distributed as dist
from fairseq import metrics
from fairseq.optim.amp_optimizer import AMPOptimizer

from ..core import MAX_PERTURBATION_ERROR, DotProductRegularizer, rounding_noise
from .optimizer import DpregOptimizerMixin, add_dpreg_flags, dpreg_settings
from .pairing import StartupError, check_optimizer_for_task, check_precision, optimizer_name, root_config

logger = logging.getLogger(__name__)

STATS = ("g1_norm", "g2_norm", "cos", "reg_norm", "reg_ratio")  # dotprod's; Reptile and FOMAML have no explicit
# regularizing term, so they log the first three only (a logged 0 would read as a measured one)
SAY_AT = (1, 10, 100, 1000)  # the occurrences at which a repeated warning is said


def _stat_keys(dp):
    return STATS if dp.dpreg["dpreg_algorithm"] == "dotprod" else STATS[:3]


def find_dpreg_optimizer(optimizer):
    """The dpreg_* optimizer inside fairseq's wrappers (FP16Optimizer, AMPOptimizer, ...), or None."""
    seen = 0
    while optimizer is not None and seen < 5:
        if isinstance(optimizer, DpregOptimizerMixin):
            return optimizer
        optimizer = (getattr(optimizer, "fp32_optimizer", None) or getattr(optimizer, "wrapped_optimizer", None))
        seen += 1
    return None


def _loss_scale(optimizer):
    scaler = getattr(optimizer, "scaler", None)
    if scaler is None:
        return 1.0
    if hasattr(scaler, "loss_scale"):
        return float(scaler.loss_scale)
    return float(scaler.get_scale())


def _average(logs):
    keys = set().union(*logs)
    return {k: sum(float(log.get(k, 0)) for log in logs) / len(logs) for k in keys}


def _add(a, b):
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def _canonical(log):
    """The logging output with its keys in one fixed order, whichever path made it. fairseq's fast stat sync
    (criteria whose outputs can be summed) all-reduces the values of the first output's keys in their order,
    by position: workers whose outputs list the same keys in another order (a set's order differs between
    processes; a dummy batch takes the plain path) would add up unrelated values."""
    return dict(sorted(log.items()))


class DpregTaskMixin:
    """Put in front of a FairseqTask: ``train_step`` splits each sub-batch in two halves and runs the passes."""

    dpreg_runs_passes = True  # what a dpreg_* optimizer's start-up check looks for

    # -- start-up checks -------------------------------------------------------------------------------
    def __init__(self, cfg, *args, **kwargs):
        super().__init__(cfg, *args, **kwargs)
        self._dpreg_init(cfg)

    @classmethod
    def add_args(cls, parser):
        """The stock task's flags and the --dpreg-* flags: fairseq adds a task's flags before the optimizer's, so
        with a plain --optimizer they still parse and the start-up check names the fix (use dpreg_NAME)."""
        super().add_args(parser)
        add_dpreg_flags(parser)

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        task = super().setup_task(cfg, **kwargs)
        if not isinstance(task, cls) and issubclass(cls, type(task)):
            # some stock tasks build themselves by name (sentence_ranking's setup_task returns
            # SentenceRankingTask(...)): put the mixin back in front
            task.__class__ = cls
            task._dpreg_init(cfg)
        return task

    def _dpreg_init(self, cfg):
        self._dpreg_core = None
        self._dpreg_optimizer = None  # the dpreg_* optimizer, once train_step has seen it
        self._dpreg_skips_logged = None
        self._dpreg_root = root_config(cfg)
        self._dpreg_precision_checked = False
        check_optimizer_for_task(self._dpreg_root, getattr(cfg, "_name", type(self).__name__))
        check_precision(self._dpreg_root)

    def begin_epoch(self, epoch, model):
        """Before the first update (after --restore-file / checkpoint loading and fairseq's .half()): stop a run
        whose weights are too coarse for the perturbation, instead of skipping every update."""
        super().begin_epoch(epoch, model)
        if not self._dpreg_precision_checked and self._dpreg_root is not None:
            self._dpreg_precision_checked = True
            if str(optimizer_name(self._dpreg_root)).startswith("dpreg_"):
                check_perturbation_resolvable(model, dpreg_settings(self._dpreg_root.optimizer))

    # -- splitting ------------------------------------------------------------------------------------
    def dpreg_batch_size(self, sample):
        if sample.get("nsentences") is not None:
            return int(sample["nsentences"])
        if torch.is_tensor(sample.get("target")):
            return sample["target"].size(0)
        return next(v for v in sample["net_input"].values() if torch.is_tensor(v)).size(0)

    def dpreg_count_tokens(self, half, full):
        """ntokens of a half, counted the way the full sample's ntokens was: non-padding target tokens, or
        non-padding source tokens (classification tasks), else in proportion to the examples."""
        def count(sample, key, dictionary):
            t = sample.get("target") if key == "target" else sample.get("net_input", {}).get("src_tokens")
            if not torch.is_tensor(t) or t.dim() < 2:
                return None
            pad = dictionary.pad() if dictionary is not None else 1
            return int(t.ne(pad).sum())

        for key, dictionary in (("target", getattr(self, "target_dictionary", None)),
                                ("src_tokens", getattr(self, "source_dictionary", None))):
            try:
                whole = count(full, key, dictionary)
            except (AttributeError, NotImplementedError, TypeError):
                continue
            if whole is not None and whole == int(full.get("ntokens", -1)):
                return count(half, key, dictionary)
        return int(full.get("ntokens", 0)) * self.dpreg_batch_size(half) // max(self.dpreg_batch_size(full), 1)

    def dpreg_split(self, sample):
        """Two disjoint halves by examples (the first has the extra one), or None for a single example."""
        bsz = self.dpreg_batch_size(sample)
        if bsz < 2:
            return None
        k = bsz - bsz // 2

        def cut(x, sl):
            if torch.is_tensor(x) and x.dim() > 0 and x.size(0) == bsz:
                return x[sl]
            if isinstance(x, dict):
                return {key: cut(v, sl) for key, v in x.items()}
            if isinstance(x, list) and len(x) == bsz:
                return x[sl]
            return x

        halves = []
        for sl in (slice(0, k), slice(k, bsz)):
            half = cut(sample, sl)
            half["nsentences"] = sl.stop - sl.start
            half["ntokens"] = self.dpreg_count_tokens(half, sample)
            halves.append(half)
        return halves

    # -- the update -----------------------------------------------------------------------------------
    def _dpreg_regularizer(self, model, criterion, dp):
        params = _trainable(model, criterion)
        core = self._dpreg_core
        if core is None or len(core.params) != len(params) or any(a is not b for a, b in zip(core.params, params)):
            d = dp.dpreg
            core = DotProductRegularizer(
                params, algorithm=d["dpreg_algorithm"], lam=d["dpreg_lambda"], radius=d["dpreg_radius"],
                fd=d["dpreg_fd"], weighting=d["dpreg_weighting"], alpha=d["dpreg_alpha"],
                max_reg_ratio=d["dpreg_max_ratio"],
            )
            self._dpreg_core = core
        return core

    def _dpreg_plain(self, sample, model, criterion, optimizer, dp, update_num, ignore_grad, fallback=0, **kwargs):
        loss, sample_size, log = super().train_step(sample, model, criterion, optimizer, update_num,
                                                    ignore_grad=ignore_grad, **kwargs)
        log = dict(log)
        log.update({"dpreg_count": 0, "dpreg_fallback": fallback},
                   **{"dpreg_" + k: 0.0 for k in _stat_keys(dp)})
        return loss, sample_size, _canonical(log)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        dp = find_dpreg_optimizer(optimizer)
        if dp is None:
            raise ValueError(
                f"task {type(self).__name__} runs the dot-product regularizer and needs a dpreg_* optimizer "
                f"(e.g. --optimizer dpreg_adam), got {type(optimizer).__name__}"
            )
        if self._dpreg_optimizer is not dp:
            self._dpreg_optimizer, self._dpreg_skips_logged = dp, dp.dpreg_state["skipped"]
        dp.dpreg_loss_scaler = getattr(optimizer, "scaler", None) is not None
        reg_scale = dp.dpreg_reg_scale(update_num)
        if reg_scale is None:  # a plain update by schedule: the same on every worker, DDP's own all-reduce
            return self._dpreg_plain(sample, model, criterion, optimizer, dp, update_num, ignore_grad, **kwargs)
        dp.dpreg_begin_update()
        # A regularized update communicates the same way on every worker, whatever its sub-batch holds (a dummy
        # batch at an epoch end, a single example): local passes under no_sync, then one all-reduce of our own.
        # Mixing DDP's hooked all-reduce on one worker with ours on another would hang or drift apart.
        sync = getattr(model, "require_backward_grad_sync", False) and hasattr(model, "no_sync")
        halves = None if ignore_grad else self.dpreg_split(sample)
        with model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext():
            if halves is not None:
                out = self._dpreg_passes(halves, model, criterion, optimizer, dp, update_num, reg_scale)
            else:
                if not ignore_grad:
                    dp.dpreg_state["fallbacks"] += 1
                    if dp.dpreg_state["fallbacks"] in SAY_AT:
                        logger.warning("dpreg: a sub-batch of one example cannot be split in two halves: plain "
                                       "gradient for it (%d such sub-batches so far)", dp.dpreg_state["fallbacks"])
                out = self._dpreg_plain(sample, model, criterion, optimizer, dp, update_num, ignore_grad,
                                        fallback=int(not ignore_grad), **kwargs)
        if sync:
            _all_reduce_grads(model, _trainable(model, criterion))
        return out

    def _dpreg_passes(self, halves, model, criterion, optimizer, dp, update_num, reg_scale):
        model.train()
        model.set_num_updates(update_num)
        core = self._dpreg_regularizer(model, criterion, dp)
        logs = {0: [], 1: []}
        sizes = {}

        def closure(i):
            def run():
                with torch.autocast("cuda", enabled=isinstance(optimizer, AMPOptimizer)):
                    loss, sample_size, log = criterion(model, halves[i])
                logs[i].append(log)
                sizes[i] = sample_size
                return loss / sample_size, sample_size
            return run

        loss_scale = _loss_scale(optimizer)
        with torch.autograd.profiler.record_function("dpreg-passes"):
            stats = core.backward(closure(0), closure(1), backward_fn=optimizer.backward,
                                  scale=lambda n1, n2: (n1 + n2) * loss_scale, grad_scale=loss_scale,
                                  reg_scale=reg_scale)
        if stats["skipped"]:
            self._dpreg_note_skip(dp, stats["skipped"], update_num)
            dp.dpreg_mark_skip(core.params)
        else:
            dp.dpreg_state["regularized"] += 1
            self._dpreg_watch(dp, stats, reg_scale)
        # B2's logged loss: at theta for forward differences, the mean of theta +- r u for central ones.
        log2 = _average(logs[1]) if len(logs[1]) > 1 and dp.dpreg["dpreg_fd"] == "central" else logs[1][0] if logs[1] else {}
        log = _add(logs[0][0] if logs[0] else {}, log2)
        sample_size = sum(float(s) for s in sizes.values())
        log.update({"dpreg_count": 0 if stats["skipped"] else 1, "dpreg_fallback": 0})
        for k in _stat_keys(dp):
            v = stats.get(k, 0.0)
            log["dpreg_" + k] = 0.0 if stats["skipped"] or v != v else float(v)
        loss = torch.tensor(stats.get("loss1", 0.0))
        return loss, sample_size, _canonical(log)

    @staticmethod
    def _dpreg_note_skip(dp, reason, update_num):
        """Say why an update was skipped: a vanished perturbation once (with the radius it needs), other reasons at
        their 1st, 10th, 100th and 1000th occurrence (a runaway can skip hundreds of updates; dpreg_skipped counts
        all)."""
        st = dp.dpreg_state
        if reason.startswith("perturbation vanished"):
            if not st["vanish_warned"]:
                logger.warning("dpreg: skipping update %d: %s", update_num + 1, reason)
            st["vanish_warned"] = True
            return
        st["skip_notes"] += 1
        if st["skip_notes"] in SAY_AT:
            logger.warning("dpreg: skipping update %d: %s (%d such skips so far)", update_num + 1, reason,
                           st["skip_notes"])

    def _dpreg_watch(self, dp, stats, reg_scale=1.0):
        """Warn (once each) on the two signatures of a regularizer that overpowers training: the dot-product term
        longer than the loss gradient over a stretch of updates (an effective beta above 1, amortized over
        --dpreg-interval: accuracy fell in every measured run that climbed past it, docs/RESULTS.md), and the
        gradients of the halves aligning while the loss rises."""
        st = dp.dpreg_state
        loss = stats.get("loss1", 0.0)
        if stats.get("reg_ratio") is not None:
            ratio = stats["reg_ratio"] / reg_scale
            st["ratio_ema"] = ratio if st["ratio_ema"] is None else 0.98 * st["ratio_ema"] + 0.02 * ratio
            if st["ratio_ema"] > 1.0 and not st["ratio_warned"]:
                st["ratio_warned"] = True
                absolute = dp.dpreg["dpreg_weighting"] == "absolute"
                logger.warning("dpreg: the dot-product term outweighs the loss gradient (effective beta ~ %.2f, "
                               "from dpreg_reg_ratio over --dpreg-interval): accuracy fell in every measured run "
                               "past 1 (docs/RESULTS.md); lower --dpreg-lambda%s", st["ratio_ema"],
                               " or use --dpreg-weighting relative" if absolute else " below 1")
        if st["cos_ema"] is None:
            st["cos_ema"], st["loss_ema"], st["loss_ref"] = stats["cos"], loss, loss
            return
        st["cos_ema"] = 0.98 * st["cos_ema"] + 0.02 * stats["cos"]
        st["loss_ema"] = 0.98 * st["loss_ema"] + 0.02 * loss
        if not st["collapse_warned"] and st["cos_ema"] > 0.9 and st["loss_ema"] > 1.05 * st.get("loss_ref", loss):
            st["collapse_warned"] = True
            logger.warning("dpreg: collapse signature: cos(g1, g2) ~ %.2f while the loss rises (%.3g -> %.3g); "
                           "lower --dpreg-lambda or use --dpreg-weighting relative",
                           st["cos_ema"], st["loss_ref"], st["loss_ema"])
        st["loss_ref"] = min(st.get("loss_ref", loss), st["loss_ema"])

    # -- logging --------------------------------------------------------------------------------------
    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        count = sum(float(log.get("dpreg_count", 0)) for log in logging_outputs)
        if count > 0:
            logged = [k for k in STATS if any("dpreg_" + k in log for log in logging_outputs)]  # by algorithm
            for k in logged:
                total = sum(float(log.get("dpreg_" + k, 0)) for log in logging_outputs)
                metrics.log_scalar("dpreg_" + k, total / count, count, round=4)
        if any("dpreg_count" in log for log in logging_outputs):  # a training step, not validation
            fallbacks = sum(float(log.get("dpreg_fallback", 0)) for log in logging_outputs)
            metrics.log_scalar_sum("dpreg_fallback", fallbacks, round=0)
            dp = self._dpreg_optimizer
            if dp is not None:  # updates not applied since the last log, whoever skipped them (fairseq's overflow
                # path drops the logging outputs of an overflowing update: the count comes from the optimizer)
                skipped = dp.dpreg_state["skipped"]
                metrics.log_scalar_sum("dpreg_skipped", skipped - (self._dpreg_skips_logged or 0), round=0)
                self._dpreg_skips_logged = skipped


def _trainable(model, criterion):
    return [p for m in (model, criterion) for p in m.parameters() if p.requires_grad]


def _all_reduce_grads(model, params, bucket_bytes=25 * 1024 * 1024):
    """One gradient all-reduce, averaging over workers like DDP (the passes ran under no_sync). Every worker
    issues the same calls: same parameters, same buckets; a parameter no pass reached contributes zeros.
    Divided before the sum, as DDP's own hook does, so fp16 gradients cannot overflow in the reduction."""
    group = getattr(model, "process_group", None)
    world = dist.get_world_size(group)
    bucket, size = [], 0
    for p in list(params) + [None]:
        if p is not None:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            bucket.append(p.grad)
            size += p.grad.numel() * p.grad.element_size()
        if bucket and (p is None or size >= bucket_bytes):
            flat = torch.cat([g.reshape(-1) for g in bucket]).div_(world)
            dist.all_reduce(flat, group=group)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
            bucket, size = [], 0


def check_perturbation_resolvable(model, settings, max_error=MAX_PERTURBATION_ERROR):
    """Stop a dotprod run whose fp16/bf16 weights cannot hold a perturbation of length --dpreg-radius.

    Rounding the perturbed weights to their own precision moves them by about ``rounding_noise`` (RMS, in
    parameter space); above ``max_error`` of the radius (the limit at which an update is skipped as "perturbation
    vanished") every update would be skipped. reptile/fomaml step by alpha*g1, whose length is known per update
    only: they get a warning here and the per-update check."""
    params = [p for p in model.parameters() if p.requires_grad]
    low = sorted({str(p.dtype).replace("torch.", "") for p in params if p.dtype in (torch.float16, torch.bfloat16)})
    if not low:
        return
    noise = rounding_noise(params)
    fix = f"use --amp (fp32 weights, fp16 compute: any radius resolves) or --dpreg-radius {100 * noise:.3g} or more"
    if settings["dpreg_algorithm"] != "dotprod":
        logger.warning("dpreg: %s weights: a %s inner step shorter than %.3g cannot be resolved (rounding alone "
                       "moves the weights that far); %s", "/".join(low), settings["dpreg_algorithm"], 10 * noise,
                       "prefer --amp (fp32 weights, fp16 compute)")
        return
    if settings["dpreg_lambda"] > 0 and noise > max_error * settings["dpreg_radius"]:
        raise StartupError(
            f"--dpreg-radius {settings['dpreg_radius']:g}: the model's {'/'.join(low)} weights cannot hold a "
            f"perturbation that short (rounding the perturbed weights moves them by {noise:.3g}, "
            f"{noise / settings['dpreg_radius']:.0%} of the radius; every update would be skipped): {fix}"
        )
