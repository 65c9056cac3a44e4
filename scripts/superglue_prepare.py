#!/usr/bin/env python
"""Turn released SuperGLUE jsonl files into raw-text fairseq inputs.

    superglue_prepare.py --task NAME --input-dir DIR --output-dir DIR [--splits train,val]

Reads DIR/{split}.jsonl. Logic: fairseq_dpreg.superglue (tasks.py documents the framing of each task).
Exit status: 0 on success, 2 on bad input (the message names the file and line).
"""

import argparse
import os
import sys


import fairseq_dpreg.superglue as superglue  # noqa: E402

EPILOG = """\
Output, per split S (raw text, one example per line; BPE + fairseq-preprocess come later):
  S.input0, S.input1, ...  the inputs of the fairseq task
  S.label                  labels (not written for an unlabelled split such as test)
  S.ids                    one JSON object per line mapping the example back to the record
  info.json                fairseq task, inputs, label set, example counts

Framing:
  BoolQ    sentence_prediction: input0 passage, input1 question; label true/false
  CB, RTE  sentence_prediction: input0 premise, input1 hypothesis; label as released
  WiC      sentence_prediction: input0/input1 = sentence1/sentence2 with the target word's
           occurrence wrapped in [ ]; label true/false
  COPA     sentence_ranking: input0 premise (final punctuation dropped) + "because" (cause) or
           "so" (effect); input1, input2 the two choices; label 0/1
  MultiRC  one sentence_prediction example per answer option: input0 paragraph,
           input1 question + " " + answer; label true/false; ids {idx, question, answer}
  ReCoRD   one example per distinct passage entity: input0 passage, input1 query with
           @placeholder replaced by the entity; label true/false; ids {idx (query), passage, entity}
  WSC      sentence_prediction: input0 text with the candidate as _cand_ and the pronoun as
           [pron]; label true/false
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="superglue_prepare.py",
        description="SuperGLUE jsonl -> raw-text fairseq inputs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, help="one of: " + ", ".join(superglue.TASKS) + " (any case)")
    parser.add_argument("--input-dir", required=True, help="directory with {split}.jsonl as released")
    parser.add_argument("--output-dir", required=True, help="where the raw-text files go")
    parser.add_argument("--splits", default="train,val", help="comma-separated splits (default: train,val)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits:
        print("superglue_prepare.py: error: --splits is empty", file=sys.stderr)
        return 2
    try:
        info = superglue.prepare_task(args.task, args.input_dir, args.output_dir, splits)
    except superglue.SuperGLUEError as e:
        print(f"superglue_prepare.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"superglue_prepare.py: error: {e.filename or args.output_dir}: {e.strerror or e}", file=sys.stderr)
        return 2
    for split, c in info["splits"].items():
        state = "labelled" if c["labelled"] else "unlabelled"
        print(f"{info['task']} {split}: {c['examples']} examples ({state}) -> {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
