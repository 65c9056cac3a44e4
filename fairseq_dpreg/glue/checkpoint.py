"""fairseq checkpoints under torch.load(weights_only=True) (torch >= 2.6): allow-list the types they hold.

Only the few plain containers fairseq writes are added to torch's safe globals; weights_only stays on.
"""
import argparse

import torch

SAFE_TYPES = [argparse.Namespace]


def allow_fairseq_checkpoints():
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals(SAFE_TYPES)


allow_fairseq_checkpoints()
