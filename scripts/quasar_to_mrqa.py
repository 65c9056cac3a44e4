#!/usr/bin/env python
"""Convert Quasar-T (Dhingra et al. 2017) from its own release format to MRQA jsonl.

    quasar_to_mrqa.py QUESTIONS CONTEXTS OUT.jsonl [--split dev] [--case-sensitive] [--max-contexts N]

QUESTIONS: jsonl with ``uid``, ``question``, ``answer`` (e.g. questions/dev_questions.json[.gz]);
CONTEXTS: jsonl with ``uid`` and ``contexts`` as ``[score, text]`` pairs (e.g. contexts/short/dev_contexts.json).
Every context that contains the answer as a whole word (case-insensitive by default) becomes one MRQA
record holding the question, with all occurrences as ``detected_answers`` char spans (inclusive end).
A question's records share its ``uid`` as ``qid``, so qa_predict.py picks the best span over them.
Questions with no answer-bearing context are dropped (counted on stderr). Output is written atomically.
"""

import argparse
import importlib.util
import json
import os
import sys

if importlib.util.find_spec("fairseq_dpreg") is None:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="quasar_to_mrqa.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("questions", metavar="QUESTIONS", help="Quasar-T questions jsonl (uid, question, answer)")
    p.add_argument("contexts", metavar="CONTEXTS", help="Quasar-T contexts jsonl (uid, contexts: [[score, text]])")
    p.add_argument("out", metavar="OUT", help="MRQA jsonl to write")
    p.add_argument("--split", default="train", help="split name for the MRQA header (default train)")
    p.add_argument("--case-sensitive", action="store_true", help="match the answer case-sensitively")
    p.add_argument("--max-contexts", type=int, default=0, metavar="N",
                   help="keep at most N answer-bearing contexts per question, in release order (0 = all)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from fairseq_dpreg.qa.data import quasar_to_mrqa, write_jsonl_atomic

    header, records, counts = quasar_to_mrqa(args.questions, args.contexts, split=args.split,
                                             case_sensitive=args.case_sensitive, max_contexts=args.max_contexts)
    write_jsonl_atomic(args.out, [header] + records)
    print(f"{args.out}: {json.dumps(counts)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from fairseq_dpreg.qa.data import QADataError

    try:
        sys.exit(main())
    except (QADataError, FileNotFoundError) as e:
        print(f"quasar_to_mrqa.py: error: {e}", file=sys.stderr)
        sys.exit(2)
