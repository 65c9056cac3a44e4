"""The standard SuperGLUE metric of each task, and evaluation of a prediction file against a gold file.

Metrics (all x 100, as on the SuperGLUE leaderboard):

* BoolQ, COPA, RTE, WiC, WSC: ``accuracy``.
* CB: ``accuracy`` and ``f1_macro``: the unweighted mean over the three classes (contradiction,
  entailment, neutral) of the per-class F1 = 2TP / (2TP + FP + FN), a class with TP = FP = FN = 0
  counting 0 (it cannot happen on the released dev set, where every class occurs).
* MultiRC: ``f1a``: F1 of the positive ("true") class over every answer option of every question
  pooled together; ``em``: fraction of questions whose options are all predicted right.
* ReCoRD: ``f1`` and ``em``: per query the best token F1 / exact match over the gold answers, with
  SQuAD answer normalisation and the SQuAD 1.1 F1 (the ReCoRD evaluator's), averaged over queries.

Prediction file: jsonl, one object per line, in the SuperGLUE submission format:

* BoolQ, WiC, WSC: ``{"idx": 0, "label": "true"}`` (true/false as JSON booleans or strings, any case)
* CB: ``{"idx": 0, "label": "entailment"}``; RTE: ``{"idx": 0, "label": "not_entailment"}``
* COPA: ``{"idx": 0, "label": 1}`` (index of the right choice: 0 or 1)
* MultiRC: the submission's nested form ``{"idx": P, "passage": {"questions": [{"idx": Q, "answers":
  [{"idx": A, "label": 1}, ...]}, ...]}}``, or flat lines ``{"idx": P, "question": Q, "answer": A,
  "label": 1}`` (a line of ``S.ids`` plus its label); labels 0/1, JSON booleans or "true"/"false"
* ReCoRD: ``{"idx": Q, "label": "entity text"}`` with ``Q`` the query (``qas``) idx

A gold example without a prediction is reported on stderr and counted as wrong; a prediction for an
id that is not in the gold file, a duplicate or an unknown label is an error naming the file and line.
"""

import collections
import sys

from ..qa.metrics import mrqa_exact_match, mrqa_f1
from .tasks import (
    CB_LABELS,
    RTE_LABELS,
    SuperGLUEError,
    binary_int_label,
    bool_label,
    build_examples,
    choice_label,
    get_task,
    read_jsonl,
    record_answer_texts,
)

__all__ = [
    "accuracy",
    "class_f1",
    "macro_f1",
    "multirc_scores",
    "record_scores",
    "evaluate",
]


# --------------------------------------------------------------------------------------------------
# metric functions on aligned lists (a prediction of None is a missing one: always wrong)


def accuracy(golds, preds):
    if len(golds) != len(preds) or not golds:
        raise ValueError("accuracy needs two non-empty lists of the same length")
    return 100.0 * sum(g == p for g, p in zip(golds, preds)) / len(golds)


def class_f1(golds, preds, positive):
    """F1 of one class: 2TP / (2TP + FP + FN); 0 when the class never occurs on either side."""
    tp = sum(g == positive and p == positive for g, p in zip(golds, preds))
    fp = sum(g != positive and p == positive for g, p in zip(golds, preds))
    fn = sum(g == positive and p != positive for g, p in zip(golds, preds))
    if tp + fp + fn == 0:
        return 0.0
    return 2.0 * tp / (2.0 * tp + fp + fn)


def macro_f1(golds, preds, labels):
    """Unweighted mean of the per-class F1 over ``labels`` (x 100)."""
    if len(golds) != len(preds) or not golds:
        raise ValueError("macro_f1 needs two non-empty lists of the same length")
    return 100.0 * sum(class_f1(golds, preds, label) for label in labels) / len(labels)


def multirc_scores(items, positive="true"):
    """``items``: [(question key, gold, pred)] for every answer option -> {"f1a", "em"} (x 100)."""
    if not items:
        raise ValueError("multirc_scores needs at least one answer option")
    golds = [g for _, g, _ in items]
    preds = [p for _, _, p in items]
    all_right = collections.OrderedDict()
    for key, gold, pred in items:
        all_right[key] = all_right.get(key, True) and gold == pred
    return collections.OrderedDict(
        [
            ("f1a", 100.0 * class_f1(golds, preds, positive)),
            ("em", 100.0 * sum(all_right.values()) / len(all_right)),
        ]
    )


def record_scores(gold_answers, preds):
    """``gold_answers``: [[answer texts]] per query; ``preds``: [text or None] -> {"f1", "em"} (x 100)."""
    if len(gold_answers) != len(preds) or not preds:
        raise ValueError("record_scores needs two non-empty lists of the same length")
    f1_sum = em_sum = 0.0
    for golds, pred in zip(gold_answers, preds):
        if pred is None or not golds:
            continue
        f1_sum += max(mrqa_f1(pred, g) for g in golds)
        em_sum += max(float(mrqa_exact_match(pred, g)) for g in golds)
    n = len(preds)
    return collections.OrderedDict([("f1", 100.0 * f1_sum / n), ("em", 100.0 * em_sum / n)])


# --------------------------------------------------------------------------------------------------
# gold and prediction files


def _int(value, where, what):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SuperGLUEError(f"{where}: {what} should be an integer, got {value!r}")


def _binary_pred(value, where, task):
    if isinstance(value, str):
        return bool_label(value, where, task)
    return binary_int_label(value, where, task)


def _copa_pred(value, where, task):
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return str(value)
    raise SuperGLUEError(f"{where}: unknown {task} label {value!r} (expected 0 or 1)")


_PRED_LABEL = {
    "BoolQ": lambda v, w: bool_label(v, w, "BoolQ"),
    "WiC": lambda v, w: bool_label(v, w, "WiC"),
    "WSC": lambda v, w: bool_label(v, w, "WSC"),
    "CB": lambda v, w: choice_label(v, CB_LABELS, w, "CB"),
    "RTE": lambda v, w: choice_label(v, RTE_LABELS, w, "RTE"),
    "COPA": lambda v, w: _copa_pred(v, w, "COPA"),
}


def _gold_examples(spec, gold_path):
    examples = build_examples(spec.name, gold_path)
    if not examples:
        raise SuperGLUEError(f"{gold_path}: no examples")
    if examples[0].label is None:
        raise SuperGLUEError(f"{gold_path}: gold file has no labels (an unlabelled split cannot be scored)")
    return examples


def _keyed_preds(pred_path, rows):
    """rows: iterable of (key, label, where); duplicates are errors."""
    preds, where_of = {}, {}
    for key, label, where in rows:
        if key in preds:
            raise SuperGLUEError(f"{where}: duplicate prediction for {_show(key)} (first at {where_of[key]})")
        preds[key] = label
        where_of[key] = where
    return preds, where_of


def _show(key):
    if isinstance(key, tuple):
        return "idx {} question {} answer {}".format(*key)
    return f"idx {key}"


def _simple_pred_rows(spec, pred_path):
    convert = _PRED_LABEL[spec.name]
    for lineno, rec in read_jsonl(pred_path):
        where = f"{pred_path}:{lineno}"
        if "idx" not in rec or "label" not in rec:
            raise SuperGLUEError(f"{where}: prediction needs 'idx' and 'label'")
        yield _int(rec["idx"], where, "idx"), convert(rec["label"], where), where


def _multirc_pred_rows(pred_path):
    for lineno, rec in read_jsonl(pred_path):
        where = f"{pred_path}:{lineno}"
        if "idx" not in rec:
            raise SuperGLUEError(f"{where}: prediction needs 'idx'")
        p_idx = _int(rec["idx"], where, "idx")
        if "passage" in rec:  # nested submission form
            passage = rec["passage"]
            if not isinstance(passage, dict) or not isinstance(passage.get("questions"), list):
                raise SuperGLUEError(f"{where}: 'passage' needs a 'questions' list")
            for q in passage["questions"]:
                if not isinstance(q, dict) or "idx" not in q or not isinstance(q.get("answers"), list):
                    raise SuperGLUEError(f"{where}: every question needs 'idx' and an 'answers' list")
                q_idx = _int(q["idx"], where, "question idx")
                for a in q["answers"]:
                    if not isinstance(a, dict) or "idx" not in a or "label" not in a:
                        raise SuperGLUEError(f"{where}: every answer needs 'idx' and 'label'")
                    a_idx = _int(a["idx"], where, "answer idx")
                    yield (p_idx, q_idx, a_idx), _binary_pred(a["label"], where, "MultiRC"), where
        else:  # flat: one answer option per line
            for key in ("question", "answer", "label"):
                if key not in rec:
                    raise SuperGLUEError(f"{where}: flat MultiRC prediction needs 'idx', 'question', 'answer', 'label'")
            key = (p_idx, _int(rec["question"], where, "question"), _int(rec["answer"], where, "answer"))
            yield key, _binary_pred(rec["label"], where, "MultiRC"), where


def _record_pred_rows(pred_path):
    for lineno, rec in read_jsonl(pred_path):
        where = f"{pred_path}:{lineno}"
        if "idx" not in rec or "label" not in rec:
            raise SuperGLUEError(f"{where}: prediction needs 'idx' and 'label'")
        if not isinstance(rec["label"], str):
            raise SuperGLUEError(f"{where}: ReCoRD label should be the predicted entity text, got {rec['label']!r}")
        yield _int(rec["idx"], where, "idx"), rec["label"], where


def _record_gold(gold_path):
    gold = collections.OrderedDict()
    for lineno, rec in read_jsonl(gold_path):
        where = f"{gold_path}:{lineno}"
        qas = rec.get("qas")
        if not isinstance(qas, list):
            raise SuperGLUEError(f"{where}: missing field 'qas'")
        for q_i, qa in enumerate(qas):
            q_where = f"{where} (qas[{q_i}])"
            if not isinstance(qa, dict) or "idx" not in qa:
                raise SuperGLUEError(f"{q_where}: query without 'idx'")
            q_idx = _int(qa["idx"], q_where, "idx")
            if "answers" not in qa:
                raise SuperGLUEError(f"{q_where}: gold query without 'answers' (an unlabelled split cannot be scored)")
            if q_idx in gold:
                raise SuperGLUEError(f"{q_where}: duplicate query idx {q_idx}")
            gold[q_idx] = record_answer_texts(qa, q_where)
    if not gold:
        raise SuperGLUEError(f"{gold_path}: no queries")
    return gold


def _align(gold_keys, preds, where_of, gold_path, pred_path, log):
    known = set(gold_keys)
    for key, where in where_of.items():
        if key not in known:
            raise SuperGLUEError(f"{where}: prediction for {_show(key)}, which is not in the gold file {gold_path}")
    missing = [k for k in gold_keys if k not in preds]
    if missing:
        log(f"{pred_path}: {len(missing)} of {len(gold_keys)} gold examples have no prediction "
            f"(counted as wrong), first: {_show(missing[0])}")
    return [preds.get(k) for k in gold_keys]


def evaluate(task, gold_path, pred_path, log=None):
    """Metrics of a prediction file (format above) against a released SuperGLUE jsonl with labels."""
    if log is None:
        log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    spec = get_task(task)
    out = collections.OrderedDict()
    if spec.name == "ReCoRD":
        gold = _record_gold(gold_path)
        preds, where_of = _keyed_preds(pred_path, _record_pred_rows(pred_path))
        aligned = _align(list(gold), preds, where_of, gold_path, pred_path, log)
        out.update(record_scores(list(gold.values()), aligned))
        out["total"] = len(gold)
        return out
    examples = _gold_examples(spec, gold_path)
    if spec.name == "MultiRC":
        keys = [(ex.ids["idx"], ex.ids["question"], ex.ids["answer"]) for ex in examples]
        if len(set(keys)) != len(keys):
            raise SuperGLUEError(f"{gold_path}: duplicate (paragraph, question, answer) idx triples")
        preds, where_of = _keyed_preds(pred_path, _multirc_pred_rows(pred_path))
        aligned = _align(keys, preds, where_of, gold_path, pred_path, log)
        # a missing prediction is scored as the wrong answer
        wrong = {"true": "false", "false": "true"}
        aligned = [wrong[ex.label] if p is None else p for p, ex in zip(aligned, examples)]
        items = [((k[0], k[1]), ex.label, p) for k, ex, p in zip(keys, examples, aligned)]
        out.update(multirc_scores(items))
        out["total_answers"] = len(items)
        out["total_questions"] = len({it[0] for it in items})
        return out
    keys = [ex.ids["idx"] for ex in examples]
    if len(set(keys)) != len(keys):
        raise SuperGLUEError(f"{gold_path}: duplicate idx values")
    preds, where_of = _keyed_preds(pred_path, _simple_pred_rows(spec, pred_path))
    aligned = _align(keys, preds, where_of, gold_path, pred_path, log)
    golds = [ex.label for ex in examples]
    out["accuracy"] = accuracy(golds, aligned)
    if spec.name == "CB":
        out["f1_macro"] = macro_f1(golds, aligned, CB_LABELS)
    out["total"] = len(golds)
    return out
