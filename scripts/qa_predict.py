#!/usr/bin/env python
"""Predict answers with an ``extractive_qa`` checkpoint; writes the official SQuAD prediction JSON.

    qa_predict.py --path CKPT --data DATA_BIN --split valid --out pred.json --na-prob-out na_prob.json
    scripts/qa_eval.py dev-v2.0.json pred.json --na-prob-file na_prob.json

``pred.json`` is ``{question_id: answer_text}`` ("" = no answer) for every question of the split;
``na_prob.json`` is ``{question_id: sigmoid(null_score - best_span_score)}``. Both are written atomically.
"""

import argparse
import importlib.util
import logging
import os
import sys

if importlib.util.find_spec("fairseq_dpreg") is None:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="qa_predict.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", required=True, metavar="CKPT", help="checkpoint (e.g. checkpoints/checkpoint_best.pt)")
    p.add_argument("--data", required=True, metavar="DIR", help="data directory made by qa_prepare.py")
    p.add_argument("--split", default="valid", help="split to predict (default valid)")
    p.add_argument("--out", required=True, metavar="FILE", help="predictions JSON {question_id: answer_text}")
    p.add_argument("--na-prob-out", metavar="FILE", help="no-answer probabilities JSON {question_id: p}")
    p.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32)")
    p.add_argument("--max-answer-len", type=int, default=30, metavar="N",
                   help="longest answer in tokens (default 30)")
    p.add_argument("--null-threshold", type=float, default=0.0, metavar="T",
                   help="answer \"\" when no-answer score - best span score > T (default 0.0)")
    p.add_argument("--force-answer", action="store_true",
                   help="always answer with the best span (MRQA data: every question has an answer)")
    p.add_argument("--cpu", action="store_true", help="run on CPU even if CUDA is available")
    p.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    p.add_argument("--user-dir", metavar="DIR", help="extra fairseq plugin to import (models the checkpoint needs)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        stream=sys.stderr)
    import torch

    from fairseq_dpreg.qa.predict import predict_split

    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    if args.fp16 and device == "cpu":
        print("qa_predict.py: --fp16 ignored on CPU", file=sys.stderr)
    preds, _ = predict_split(args.path, args.data, split=args.split, out=args.out, na_prob_out=args.na_prob_out,
                             batch_size=args.batch_size, max_answer_len=args.max_answer_len,
                             null_threshold=args.null_threshold, force_answer=args.force_answer, device=device,
                             fp16=args.fp16 and device == "cuda", user_dir=args.user_dir)
    n_empty = sum(1 for v in preds.values() if v == "")
    print(f"{args.out}: {len(preds)} questions, {n_empty} answered with no-answer", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from fairseq_dpreg.qa.data import QADataError

    try:
        sys.exit(main())
    except (QADataError, FileNotFoundError) as e:
        print(f"qa_predict.py: error: {e}", file=sys.stderr)
        sys.exit(2)
