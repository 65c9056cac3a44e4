"""Reading a fairseq checkpoint file under torch.load(weights_only=True), without importing fairseq.

torch >= 2.6 loads with weights_only=True, and fairseq 0.12 checkpoints hold one type its unpickler refuses
unless allowed: ``argparse.Namespace`` (``args`` of older checkpoints, ``cfg["model"]`` of models built from
args). It is added to torch's safe globals; weights_only stays on. The fairseq glue
(``fairseq_dpreg.glue.checkpoint``) allows it at import, for fairseq's own loading; the project's scripts that
only read a checkpoint's numbers use :func:`load_state` and need no fairseq.
"""
import argparse

import torch

SAFE_TYPES = [argparse.Namespace]


def allow_fairseq_checkpoints():
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals(SAFE_TYPES)


def load_state(path, mmap=False):
    """The checkpoint's contents on the CPU. With ``mmap`` its tensors are read only where used (a checkpoint's
    config or counters without its weights); a legacy (non-zip) file, which cannot be memory-mapped, is read whole."""
    allow_fairseq_checkpoints()
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
    return torch.load(path, map_location="cpu", weights_only=True)


def updates_done(path):
    """The number of updates after which the fairseq checkpoint ``path`` was saved."""
    return load_state(path, mmap=True)["optimizer_history"][-1]["num_updates"]
