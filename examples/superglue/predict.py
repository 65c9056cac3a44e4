#!/usr/bin/env python
"""Predict one prepared SuperGLUE split with a trained checkpoint, in the SuperGLUE submission jsonl format.

    examples/superglue/predict.py --path CHECKPOINT --data DATA_BIN --out PRED.jsonl
                                  [--split valid] [--batch-size 32] [--cpu] [--fp16] [--scores-out FILE]

DATA_BIN is the folder written by examples/superglue/prepare.sh: it holds the binarized inputs, superglue.json
(task, labels) and {split}.ids (the SuperGLUE record of every example, in order). The checkpoint is loaded with
fairseq's checkpoint_utils.load_model_ensemble_and_task (the plugin is imported first, so checkpoints of the
*_dpreg tasks load too); the model's classification head (sentence_classification_head unless the run named
another) scores every example, and the examples are grouped back into SuperGLUE records:

  BoolQ, WiC, WSC  {"idx": 0, "label": "true"}          argmax over the two classes
  CB, RTE          {"idx": 0, "label": "entailment"}    argmax over the classes
  COPA             {"idx": 0, "label": 1}               the choice with the higher ranking score
  MultiRC          {"idx": P, "passage": {"questions": [{"idx": Q, "answers": [{"idx": A, "label": 0/1}]}]}}
  ReCoRD           {"idx": Q, "label": "entity"}        the candidate with the highest P(true) per query

--scores-out FILE also writes, per example, its ids and the model's log-probabilities (one JSON per line).
Outputs are written to a temporary file and renamed into place. Exit status 0, or 2 on bad input.
"""

import argparse
import collections
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
from fairseq_dpreg.atomic import write_lines_atomic  # noqa: E402

BINARY_TASKS = ("BoolQ", "WiC", "WSC")


class PredictError(Exception):
    pass


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="predict.py", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--path", required=True, help="checkpoint file (e.g. SAVE_DIR/checkpoint_best.pt)")
    parser.add_argument("--data", required=True, help="DATA_BIN folder written by prepare.sh")
    parser.add_argument("--split", default="valid", help="fairseq split name (default: valid)")
    parser.add_argument("--out", required=True, help="prediction file to write (SuperGLUE jsonl)")
    parser.add_argument("--scores-out", help="also write per-example ids and log-probabilities here (jsonl)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default: 32)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    parser.add_argument("--fp16", action="store_true", help="half-precision inference (GPU only)")
    return parser.parse_args(argv)


def read_description(data, split):
    desc_path = os.path.join(data, "superglue.json")
    ids_path = os.path.join(data, f"{split}.ids")
    for path in (desc_path, ids_path):
        if not os.path.isfile(path):
            raise PredictError(f"{path}: missing (prepare the data with examples/superglue/prepare.sh)")
    with open(desc_path, encoding="utf-8") as f:
        desc = json.load(f)
    with open(ids_path, encoding="utf-8") as f:
        ids = [json.loads(line) for line in f if line.strip()]
    return desc, ids


def checkpoint_task(path):
    """The fairseq task a checkpoint was trained with: ``cfg["task"]["_name"]`` (``cfg["task"]._name``, a Namespace,
    for a task without a dataclass such as sentence_ranking) or ``args.task`` of old checkpoints. Read with
    torch.load(weights_only=True); fairseq_dpreg.glue.checkpoint (imported by load) allow-lists the Namespace."""
    import torch

    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # mmap needs torch.save's zip format (torch >= 1.6): read the file whole
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PredictError(f"{path}: not a fairseq checkpoint ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})")
    if not isinstance(state, dict):
        raise PredictError(f"{path}: not a fairseq checkpoint (no dictionary of model and settings)")
    task = (state.get("cfg") or {}).get("task")  # a dict, or a Namespace for a task without a dataclass
    if isinstance(task, dict):
        return task.get("_name")
    if task is not None:
        return getattr(task, "_name", None) or getattr(task, "task", None)
    return getattr(state.get("args"), "task", None)


def load(path, data, use_cuda, fp16, fairseq_task):
    import fairseq  # noqa: F401  (fairseq first: the plugin registers its glue only when fairseq is loaded)

    from fairseq_dpreg.glue.checkpoint import load_for_inference

    if not os.path.isfile(path):
        raise PredictError(f"{path}: missing checkpoint")
    task_name = checkpoint_task(path)
    if task_name not in (fairseq_task, fairseq_task + "_dpreg"):
        raise PredictError(f"{path}: a checkpoint of task {task_name}, not of {fairseq_task} or {fairseq_task}_dpreg "
                           f"(give a checkpoint trained by examples/superglue/train.sh on this task)")
    model, cfg, task = load_for_inference(path, data)
    if fp16:
        model.half()
    if use_cuda:
        model.cuda()
    return model, cfg, task


def head_name(model, cfg):
    heads = getattr(model, "classification_heads", None)
    if not heads:
        raise PredictError("the checkpoint's model has no classification head (was it trained with sentence_prediction "
                           "or sentence_ranking?)")
    crit = cfg.criterion
    for key in ("classification_head_name", "ranking_head_name"):
        name = crit.get(key, None) if hasattr(crit, "get") else getattr(crit, key, None)
        if name in heads:
            return name
    if "sentence_classification_head" in heads:
        return "sentence_classification_head"
    if len(heads) == 1:
        return next(iter(heads))
    raise PredictError(f"cannot tell which classification head to use: {', '.join(heads)}")


def score_split(model, cfg, task, split, batch_size, use_cuda):
    """{example index: [log-probabilities]} over the classes (sentence_prediction) or choices (ranking)."""
    import torch
    import torch.nn.functional as F
    from fairseq import utils

    task.load_dataset(split)
    dataset = task.dataset(split)
    head = head_name(model, cfg)
    from fairseq.tasks.sentence_ranking import SentenceRankingTask

    ranking = isinstance(task, SentenceRankingTask)
    num_choices = getattr(cfg.task, "num_classes", None)
    itr = task.get_batch_iterator(
        dataset=dataset, max_sentences=batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=False, num_workers=0, seed=1,
    ).next_epoch_itr(shuffle=False)
    scores = {}
    with torch.no_grad():
        for sample in itr:
            if not sample:
                continue
            if use_cuda:
                sample = utils.move_to_cuda(sample)
            if ranking:
                logits = torch.cat([
                    model(**sample[f"net_input{k + 1}"], classification_head_name=head)[0]
                    for k in range(num_choices)
                ], dim=1)
            else:
                logits = model(**sample["net_input"], features_only=True, classification_head_name=head)[0]
            lprobs = F.log_softmax(logits.float(), dim=-1)
            for i, row in zip(sample["id"].tolist(), lprobs.tolist()):
                scores[i] = row
    return scores, ranking


def class_labels(task, cfg, desc):
    """Label text of every class index, from the label dictionary the model was trained with."""
    labels = getattr(task, "label_dictionary", None)
    if labels is None:
        return list(desc["labels"])
    return [labels[k + labels.nspecial] for k in range(cfg.task.num_classes)]


def predictions(desc, ids, scores, labels):
    """The SuperGLUE jsonl lines of a split."""
    name = desc["task"]
    n = len(ids)
    best = [max(range(len(scores[i])), key=scores[i].__getitem__) for i in range(n)]
    if name == "COPA":
        return [json.dumps({"idx": ids[i]["idx"], "label": best[i]}) for i in range(n)]
    text = [labels[b] for b in best]
    if name in BINARY_TASKS or name in ("CB", "RTE"):
        return [json.dumps({"idx": ids[i]["idx"], "label": text[i]}, ensure_ascii=False) for i in range(n)]
    if name == "MultiRC":
        paragraphs = collections.OrderedDict()
        for i in range(n):
            questions = paragraphs.setdefault(ids[i]["idx"], collections.OrderedDict())
            answers = questions.setdefault(ids[i]["question"], [])
            answers.append({"idx": ids[i]["answer"], "label": 1 if text[i] == "true" else 0})
        return [json.dumps({"idx": p, "passage": {"questions": [{"idx": q, "answers": a} for q, a in qs.items()]}})
                for p, qs in paragraphs.items()]
    if name == "ReCoRD":
        true = labels.index("true")
        queries = collections.OrderedDict()
        for i in range(n):
            q = ids[i]["idx"]
            if q not in queries or scores[i][true] > queries[q][0]:
                queries[q] = (scores[i][true], ids[i]["entity"])
        return [json.dumps({"idx": q, "label": ent}, ensure_ascii=False) for q, (_, ent) in queries.items()]
    raise PredictError(f"unknown task {name!r} in superglue.json")


def main(argv=None):
    args = parse_args(argv)
    try:
        desc, ids = read_description(args.data, args.split)
        import torch

        use_cuda = torch.cuda.is_available() and not args.cpu
        if args.fp16 and not use_cuda:
            raise PredictError("--fp16 needs a GPU")
        model, cfg, task = load(args.path, args.data, use_cuda, args.fp16, desc["fairseq_task"])
        scores, ranking = score_split(model, cfg, task, args.split, args.batch_size, use_cuda)
        if ranking != (desc["fairseq_task"] == "sentence_ranking"):
            raise PredictError(f"the checkpoint's task does not match {desc['task']} ({desc['fairseq_task']})")
        if sorted(scores) != list(range(len(ids))):
            raise PredictError(f"{args.data}/{args.split}.ids lists {len(ids)} examples but the model scored "
                               f"{len(scores)} of the split: prepare and predict must use the same data")
        labels = None if ranking else class_labels(task, cfg, desc)
        if labels is not None and sorted(labels) != sorted(desc["labels"]):
            raise PredictError(f"the label dictionary {labels} does not match the task's labels {desc['labels']}")
        lines = predictions(desc, ids, scores, labels)
        write_lines_atomic(args.out, lines)
        if args.scores_out:
            write_lines_atomic(args.scores_out, [json.dumps({"ids": ids[i], "lprobs": scores[i]}, ensure_ascii=False)
                                           for i in range(len(ids))])
    except PredictError as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 2
    print(f"{desc['task']} {args.split}: {len(ids)} examples -> {len(lines)} predictions in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
