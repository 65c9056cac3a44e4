#!/usr/bin/env python
"""Exact match / F1 for extractive QA: SQuAD 2.0 JSON or MRQA jsonl gold files.

Command line and output keys follow the official SQuAD 2.0 evaluation script:

    qa_eval.py DATA_FILE PRED_FILE [--na-prob-file F] [--na-prob-thresh T] [--out-file F] [--verbose]

The logic lives in fairseq_dpreg.qa.metrics; this file only parses arguments and prints.
Exit status: 0 on success, 2 on bad input (the message names the file and the record).
"""

import argparse
import json
import sys


from fairseq_dpreg.qa import metrics  # noqa: E402
from fairseq_dpreg.atomic import write_atomic  # noqa: E402

DESCRIPTION = """\
Evaluate extractive QA predictions (scores x 100).

The gold format is detected from the file content (gzip accepted):
  * SQuAD 2.0 JSON ({"data": [{"paragraphs": [{"qas": [{"id", "answers": [{"text"}]}]}]}]}):
    reports exact, f1, total, HasAns_exact/f1/total and NoAns_exact/f1/total (when such questions
    exist) and, with --na-prob-file, best_exact, best_exact_thresh, best_f1, best_f1_thresh, with the
    official SQuAD 2.0 semantics (an unanswerable question is answered by the empty string).
  * MRQA jsonl (first line {"header": ...}, then one context per line with "qas", each qa with "qid"
    and "answers" [strings]): reports exact_match and f1 as the MRQA 2019 evaluator does.

PRED_FILE is a JSON object {question_id: answer_text} (ids absent from the data are ignored).
A question without a prediction is reported on stderr and counted as wrong.
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="qa_eval.py", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_file", metavar="DATA_FILE", help="gold file: SQuAD 2.0 .json or MRQA .jsonl(.gz)")
    parser.add_argument("pred_file", metavar="PRED_FILE", help="predictions: JSON {question_id: answer_text}")
    parser.add_argument("--out-file", "-o", metavar="F", help="also write the metrics JSON here (atomically)")
    parser.add_argument(
        "--na-prob-file", "-n", metavar="F",
        help="JSON {question_id: probability that the question has no answer} (SQuAD 2.0 only)",
    )
    parser.add_argument(
        "--na-prob-thresh", "-t", type=float, default=1.0, metavar="T",
        help='predict "" when the no-answer probability exceeds T (default 1.0)',
    )
    parser.add_argument(
        "--skip-no-answer", action="store_true",
        help="MRQA only: leave questions without a prediction out of the total instead of scoring 0",
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true",
        help="print per-question raw scores (before any no-answer threshold) to stderr",
    )
    return parser.parse_args(argv)


def _verbose_report(args):
    data = metrics.load_qa_data(args.data_file)
    preds = metrics.load_predictions(args.pred_file)
    for qid, golds in data.questions:
        pred = preds.get(qid)
        if pred is None:
            print(f"{qid}\tMISSING", file=sys.stderr)
            continue
        if data.format == "squad":
            refs = [g for g in golds if metrics.normalize_answer(g)] or [""]
            em = max(metrics.compute_exact(g, pred) for g in refs)
            f1 = max(metrics.compute_f1(g, pred) for g in refs)
        else:
            refs = golds
            em = max(float(metrics.mrqa_exact_match(pred, g)) for g in refs)
            f1 = max(metrics.mrqa_f1(pred, g) for g in refs)
        print(f"{qid}\texact={em:g}\tf1={f1:.4f}\tpred={pred!r}\tgold={refs!r}", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    try:
        result = metrics.evaluate_files(
            args.data_file,
            args.pred_file,
            na_prob_file=args.na_prob_file,
            na_prob_thresh=args.na_prob_thresh,
            skip_no_answer=args.skip_no_answer,
        )
        if args.verbose:
            _verbose_report(args)
        text = json.dumps(result, indent=2)
        if args.out_file:
            write_atomic(args.out_file, text + "\n")
    except metrics.QAEvalError as e:
        print(f"qa_eval.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"qa_eval.py: error: cannot write {args.out_file}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
