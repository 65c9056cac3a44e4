"""Runs fairseq-train in this process (one rank), counting gradient all-reduces and timing each update.

Used by tests/test_distributed.py and scripts/bench_distributed.py.

Counted: every torch.distributed.all_reduce of a floating tensor with >= MIN_NUMEL elements made from Python
(fairseq's legacy_ddp, the plugin's own all-reduce) and every bucket PyTorch DDP (c10d) all-reduces, through a
counting comm hook. Small all-reduces (logging statistics, gradient-norm checks) are not gradient traffic.
Writes {"calls": N, "numel": M, "updates": U, "step_seconds": [...]} to $DPREG_COUNT_FILE at exit.
"""
import atexit
import json
import os
import sys
import time

import torch
import torch.distributed as dist

MIN_NUMEL = 1000
counts = {"calls": 0, "numel": 0}


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
    counts["updates"] = UPDATES[0]
    with open(os.environ["DPREG_COUNT_FILE"], "w") as f:
        json.dump(counts, f)


UPDATES = [0]
from fairseq import trainer as _trainer_mod  # noqa: E402

_set = _trainer_mod.Trainer.set_num_updates


def _set_num_updates(self, n):
    UPDATES[0] = n
    return _set(self, n)


_trainer_mod.Trainer.set_num_updates = _set_num_updates
_train_step = _trainer_mod.Trainer.train_step
counts["step_seconds"] = []


def _timed_train_step(self, samples, raise_oom=False):
    t0 = time.perf_counter()
    out = _train_step(self, samples, raise_oom)
    counts["step_seconds"].append(time.perf_counter() - t0)
    return out


_trainer_mod.Trainer.train_step = _timed_train_step
atexit.register(_write)

if __name__ == "__main__":
    from fairseq_cli.train import cli_main

    sys.argv = ["fairseq-train"] + sys.argv[1:]
    cli_main()
