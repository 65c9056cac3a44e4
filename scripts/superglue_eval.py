#!/usr/bin/env python
"""Score SuperGLUE predictions with each task's standard metric.

    superglue_eval.py --task NAME --gold DIR/val.jsonl --pred PRED.jsonl [--out-file F]

Logic: fairseq_dpreg.superglue.metrics. Prints the metrics as JSON (scores x 100).
Exit status: 0 on success, 2 on bad input (the message names the file and line).
"""

import argparse
import json
import sys


import fairseq_dpreg.superglue as superglue  # noqa: E402
from fairseq_dpreg.atomic import write_atomic  # noqa: E402

EPILOG = """\
Metrics (x 100):
  BoolQ, COPA, RTE, WiC, WSC  accuracy
  CB                          accuracy, f1_macro (mean of the 3 per-class F1)
  MultiRC                     f1a (F1 over all answer options), em (questions with every option right)
  ReCoRD                      f1, em (best over gold answers, SQuAD normalisation)

Prediction file (PRED.jsonl): one JSON object per line, the SuperGLUE submission format:
  BoolQ, WiC, WSC  {"idx": 0, "label": "true"}      (true/false: JSON booleans or strings, any case)
  CB               {"idx": 0, "label": "neutral"}   (entailment / contradiction / neutral)
  RTE              {"idx": 0, "label": "entailment"} (entailment / not_entailment)
  COPA             {"idx": 0, "label": 1}           (index of the right choice, 0 or 1)
  MultiRC          {"idx": P, "passage": {"questions": [{"idx": Q, "answers":
                     [{"idx": A, "label": 1}, ...]}, ...]}}   (nested, as submitted)
                   or flat lines {"idx": P, "question": Q, "answer": A, "label": 1}
                   (a line of the prepared S.ids file plus its label; 0/1, booleans or "true"/"false")
  ReCoRD           {"idx": Q, "label": "predicted entity text"}  (Q = the query's qas idx)
"idx" is the record's idx in the gold file. A gold example without a prediction is reported on
stderr and counted as wrong; unknown ids, duplicates and unknown labels are errors.
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="superglue_eval.py",
        description="Score SuperGLUE predictions against a released jsonl file with labels.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, help="one of: " + ", ".join(superglue.TASKS) + " (any case)")
    parser.add_argument("--gold", required=True, help="released jsonl with labels, e.g. DIR/val.jsonl")
    parser.add_argument("--pred", required=True, help="predictions, jsonl (format below)")
    parser.add_argument("--out-file", help="also write the metrics JSON here (atomically)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        result = superglue.evaluate(args.task, args.gold, args.pred)
        text = json.dumps({"task": superglue.get_task(args.task).name, **result}, indent=2)
        if args.out_file:
            write_atomic(args.out_file, text + "\n")
    except superglue.SuperGLUEError as e:
        print(f"superglue_eval.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"superglue_eval.py: error: cannot write {args.out_file}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
