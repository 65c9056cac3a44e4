"""Runs fairseq-train in this process (one rank), instrumented for tests and benchmarks.

Used by tests/test_distributed.py, tests/test_mixed_precision.py, scripts/bench_distributed.py and
scripts/gpu_check.sh. Always on:
- counts gradient all-reduces: every torch.distributed.all_reduce of a floating tensor with >= MIN_NUMEL
  elements made from Python (fairseq's legacy_ddp, the plugin's own all-reduce) and every bucket PyTorch DDP
  (c10d) all-reduces, through a counting comm hook. Small all-reduces (logging statistics, gradient-norm
  checks) are not gradient traffic;
- times every update and records, after every call of Trainer.train_step (an amp retry is a call of its
  own), the number of updates done and the loss scale (fp16: DynamicLossScaler, amp: GradScaler).
Writes {"calls": N, "numel": M, "updates": U, "step_seconds": [...], "steps": [[updates, scale], ...]} to
$DPREG_COUNT_FILE at exit.

Optional, by environment variable:
- DPREG_EMULATE_GPU=1 (CPU only): lets fairseq's --fp16 / --memory-efficient-fp16 / --amp paths run on the
  CPU: FP16Optimizer's flat master copy is built for the CPU device (torch.cuda.current_device -> None, the
  index of a CPU tensor's device), the trainer's overflow branch keeps its CPU tensor (Tensor.cuda -> self),
  and --amp gets PyTorch's CPU GradScaler in place of the CUDA one (which disables itself without CUDA).
  Compute stays what the CPU does: fp16 weights under --fp16, fp32 under --amp (autocast is a CUDA feature).
- DPREG_INJECT_OVERFLOW=3,7 : in those calls of Trainer.train_step (1-based), every criterion loss is
  multiplied by inf, so the update overflows the way a real fp16 overflow does, at the same calls in a plain
  and a regularized run.
"""
import atexit
import json
import logging
import os
import sys
import time

import torch
import torch.distributed as dist

MIN_NUMEL = 1000
counts = {"calls": 0, "numel": 0, "step_seconds": [], "steps": []}
INJECT = {int(c) for c in os.environ.get("DPREG_INJECT_OVERFLOW", "").split(",") if c.strip()}

if os.environ.get("DPREG_EMULATE_GPU") == "1" and not torch.cuda.is_available():
    import functools

    torch.cuda.current_device = lambda: None
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.cuda.amp.GradScaler = functools.partial(torch.amp.GradScaler, "cpu")


def _note(tensor):
    if tensor.is_floating_point() and tensor.numel() >= MIN_NUMEL:
        counts["calls"] += 1
        counts["numel"] += tensor.numel()


_all_reduce = dist.all_reduce


def counting_all_reduce(tensor, *args, **kwargs):
    _note(tensor)
    return _all_reduce(tensor, *args, **kwargs)


dist.all_reduce = counting_all_reduce


def counting_hook(state, bucket):
    tensor = bucket.buffer()
    _note(tensor)
    tensor.div_(dist.get_world_size())
    return _all_reduce(tensor, async_op=True).get_future().then(lambda f: f.value()[0])


import fairseq_dpreg.glue  # noqa: E402,F401  (installs the CPU-compatible DDP class)
import fairseq.models.distributed_fairseq_model as dfm  # noqa: E402

_DDP = dfm.DistributedDataParallel


class CountingDDP(_DDP):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_comm_hook(None, counting_hook)


dfm.DistributedDataParallel = CountingDDP


def _write():
    if not os.environ.get("DPREG_COUNT_FILE"):
        return
    counts["updates"] = UPDATES[0]
    with open(os.environ["DPREG_COUNT_FILE"], "w") as f:
        json.dump(counts, f)


UPDATES = [0]
CALL = [0]
from fairseq import trainer as _trainer_mod  # noqa: E402

_set = _trainer_mod.Trainer.set_num_updates


def _set_num_updates(self, n):
    UPDATES[0] = n
    return _set(self, n)


def _loss_scale(optimizer):
    scaler = getattr(optimizer, "scaler", None)
    if scaler is None:
        return None
    return float(scaler.loss_scale) if hasattr(scaler, "loss_scale") else float(scaler.get_scale())


def _inject(criterion):
    if getattr(criterion, "_dpreg_injected", False):
        return
    forward = criterion.forward

    def poisoned(*args, **kwargs):
        loss, sample_size, log = forward(*args, **kwargs)
        if CALL[0] in INJECT:
            loss = loss * float("inf")
        return loss, sample_size, log

    criterion.forward = poisoned
    criterion._dpreg_injected = True


_trainer_mod.Trainer.set_num_updates = _set_num_updates
_train_step = _trainer_mod.Trainer.train_step


def _instrumented_train_step(self, samples, raise_oom=False):
    CALL[0] += 1
    _inject(self.criterion)
    t0 = time.perf_counter()
    out = _train_step(self, samples, raise_oom)
    counts["step_seconds"].append(time.perf_counter() - t0)
    counts["steps"].append([self.get_num_updates(), _loss_scale(self.optimizer)])
    return out


_trainer_mod.Trainer.train_step = _instrumented_train_step
atexit.register(_write)

if __name__ == "__main__":
    from fairseq_cli.train import cli_main

    sys.argv = ["fairseq-train"] + sys.argv[1:]
    cli_main()
    # fairseq leaves the process group up. A rank that had finished training has twice aborted while the
    # interpreter shut down ("terminate called without an active exception", rc -6, once in CI's legacy_ddp
    # run, once in its c10d run after destroy_process_group was added here; 0 in 24 runs alone): the ranks now
    # meet at a barrier, tear the group down together, write their counts and leave without the interpreter's
    # teardown of native threads.
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    atexit.unregister(_write)
    _write()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
