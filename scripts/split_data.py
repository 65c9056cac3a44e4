#!/usr/bin/env python
"""Stated held-out splits for the CPU recipes (logic and rules: fairseq_dpreg/splits.py).

    split_data.py boolq BoolQ/val.jsonl OUT_DIR [--test-tenths 3]
        OUT_DIR/train.jsonl and OUT_DIR/val.jsonl (the test part), split by passage
    split_data.py squad dev-v2.0-half.json OUT_DIR [--test 12,13,14,15] [--valid 11]
        OUT_DIR/train.json, valid.json, test.json of whole articles (0-based positions in the file)

Prints the counts as JSON. Exit status 2 on bad input.
"""
import argparse
import importlib.util
import json
import os
import sys

if importlib.util.find_spec("fairseq_dpreg") is None:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_dpreg.splits import SplitError, split_boolq, split_squad  # noqa: E402


def ints(text):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated article numbers, e.g. 12,13") from None


def main(argv=None):
    p = argparse.ArgumentParser(prog="split_data.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["boolq", "squad"])
    p.add_argument("input", metavar="FILE")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--test-tenths", type=int, default=3, help="boolq: passages in buckets 0..N-1 of 10 go to the test part (3)")
    p.add_argument("--test", type=ints, default=[12, 13, 14, 15], help="squad: test articles (12,13,14,15)")
    p.add_argument("--valid", type=ints, default=[11], help="squad: valid articles (11; empty for none)")
    args = p.parse_args(argv)
    if not os.path.isfile(args.input):
        p.error(f"{args.input}: no such file")
    try:
        if args.kind == "boolq":
            out = split_boolq(args.input, args.out_dir, args.test_tenths)
        else:
            out = split_squad(args.input, args.out_dir, args.test, args.valid)
    except SplitError as e:
        print(f"split_data.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
