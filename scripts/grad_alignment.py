#!/usr/bin/env python
"""Gradient alignment of a checkpoint on held-out data: the mean cosine between the loss gradients of disjoint
mini-batches (1 vs 2, 3 vs 4, ...), dropout off, in fairseq's shuffled batch order for --seed.

    python scripts/grad_alignment.py CHECKPOINT DATA_BIN [--subset valid] [--pairs 16] [--max-tokens N]
                                     [--batch-size N] [--seed 1] [--json OUT]

Batches default to the checkpoint's own --max-tokens / --batch-size. Prints one JSON line (mean_cos, sd, ci95,
the cosines); --json also writes it (atomically). Library: fairseq_dpreg/alignment.py.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fairseq_dpreg.alignment import AlignmentError, checkpoint_alignment  # noqa: E402
from fairseq_dpreg.atomic import write_json_atomic  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("data", help="the data folder the checkpoint was trained on (fairseq DATA_BIN)")
    p.add_argument("--subset", default="valid", help="held-out split (default valid)")
    p.add_argument("--pairs", type=int, default=16, help="pairs of batches (default 16)")
    p.add_argument("--max-tokens", type=int, help="tokens per batch (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, help="sentences per batch (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=1, help="batch order (default 1)")
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        p.error(f"{args.checkpoint}: missing checkpoint")
    if not os.path.isdir(args.data):
        p.error(f"{args.data}: missing data folder")
    try:
        out = checkpoint_alignment(args.checkpoint, args.data, args.subset, args.pairs, args.max_tokens,
                                   args.batch_size, args.seed)
    except AlignmentError as e:
        p.error(str(e))
    print(json.dumps(out))
    if args.json:
        write_json_atomic(args.json, out)


if __name__ == "__main__":
    main()
