"""Exact-match / F1 evaluation for extractive QA (SQuAD 2.0 and MRQA).

Two scoring conventions live here, both re-implemented from their public definitions:

* SQuAD 2.0 (the official ``evaluate-v2.0.py``): gold answers that normalise to the empty string are
  dropped and a question left with no gold answer is scored against the single gold ``''`` (so the
  right output for an unanswerable question is the empty string); F1 between an empty and a non-empty
  token list is 0 and between two empty lists 1; a no-answer probability above ``na_prob_thresh``
  turns a prediction into "no answer"; with a no-answer probability file the best threshold is searched
  the way the official script does it (see :func:`find_best_thresh`).
* MRQA 2019 (``mrqa_official_eval.py``): the same normalisation, best score over the gold answers, but
  the plain SQuAD 1.1 F1 (no special case for empty strings) and keys ``exact_match`` / ``f1``.

Both report scores x 100. One deliberate difference from the official SQuAD 2.0 script: a question
without a prediction is reported ("Missing prediction for ...") and counted as wrong (0 EM, 0 F1, it
stays in every total), where the official script drops it from the scored set and then fails with a
``KeyError`` while building the HasAns/NoAns breakdown. With a prediction for every question the
numbers are identical. MRQA's own script already counts an unanswered question as 0.

Input problems raise :class:`QAEvalError` with the file and the record named; no traceback is needed
to find what is wrong.
"""

import collections
import gzip
import json
import math
import re
import string
import sys

from .data import json_error

__all__ = [
    "QAEvalError",
    "QAData",
    "normalize_answer",
    "get_tokens",
    "compute_exact",
    "compute_f1",
    "mrqa_exact_match",
    "mrqa_f1",
    "load_qa_data",
    "load_predictions",
    "load_na_probs",
    "squad_v2_raw_scores",
    "apply_no_ans_threshold",
    "find_best_thresh",
    "evaluate_squad_v2",
    "evaluate_mrqa",
    "evaluate_files",
]


class QAEvalError(ValueError):
    """Bad evaluation input (the message names the file and the record)."""


# --------------------------------------------------------------------------------------------------
# normalisation and per-answer scores

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text):
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace."""
    lowered = text.lower()
    no_punct = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punct)
    return " ".join(no_articles.split())


def get_tokens(text):
    """Normalised tokens; the empty string (or None) has none."""
    if not text:
        return []
    return normalize_answer(text).split()


def _token_f1(gold_toks, pred_toks):
    overlap = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_toks)
    recall = overlap / len(gold_toks)
    return 2.0 * precision * recall / (precision + recall)


def compute_exact(a_gold, a_pred):
    """SQuAD 2.0 exact match of one gold answer: 1 or 0."""
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    """SQuAD 2.0 token F1 of one gold answer; empty vs empty is 1, empty vs non-empty 0."""
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    return _token_f1(gold_toks, pred_toks)


def mrqa_exact_match(prediction, ground_truth):
    """MRQA (SQuAD 1.1) exact match: normalised strings equal."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def mrqa_f1(prediction, ground_truth):
    """MRQA (SQuAD 1.1) token F1: 0 whenever nothing overlaps, empty strings included."""
    return _token_f1(normalize_answer(ground_truth).split(), normalize_answer(prediction).split())


# --------------------------------------------------------------------------------------------------
# reading files

QAData = collections.namedtuple("QAData", ["format", "path", "questions"])
QAData.__doc__ = """A gold file: ``format`` is 'squad' or 'mrqa'; ``questions`` is a list of
(question_id, [gold answer strings]) in file order."""


def _read_text(path, what):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise QAEvalError(f"{what} {path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise QAEvalError(f"{what} {path}: broken gzip data ({e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise QAEvalError(f"{what} {path}: not UTF-8 text (byte {e.start})") from None


def _parse_json_document(text, path, what):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise QAEvalError(
            f"{what} {path}: malformed JSON at line {e.lineno}, column {e.colno}: {json_error(e)}"
        ) from None


def _first_nonblank_line(text):
    stripped = text.lstrip()
    if not stripped:
        return None
    return stripped.split("\n", 1)[0]


def load_qa_data(path):
    """Read a SQuAD (``{"data": [...]}``) or MRQA (jsonl, optional header line) gold file.

    The format is detected from the content; gzip-compressed files are accepted.
    """
    text = _read_text(path, "data file")
    first = _first_nonblank_line(text)
    if first is None:
        raise QAEvalError(f"data file {path}: empty file")
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    if isinstance(head, dict) and "header" in head:
        return QAData("mrqa", path, _mrqa_questions(text, path))
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as e:
        if isinstance(head, dict) and "qas" in head:  # MRQA jsonl without its header line
            return QAData("mrqa", path, _mrqa_questions(text, path))
        raise QAEvalError(
            f"data file {path}: malformed JSON at line {e.lineno}, column {e.colno}: {json_error(e)}"
        ) from None
    if isinstance(whole, dict) and "data" in whole:
        return QAData("squad", path, _squad_questions(whole["data"], path))
    if isinstance(whole, dict) and "qas" in whole:  # a one-line MRQA file
        return QAData("mrqa", path, _mrqa_questions(text, path))
    raise QAEvalError(
        f"data file {path}: unrecognised format (expected SQuAD JSON with a top-level 'data' list, "
        "or MRQA jsonl whose first line is a {\"header\": ...} record)"
    )


def _check_qid(qid, where, seen):
    if not isinstance(qid, str):
        raise QAEvalError(f"{where}: question id must be a string, got {qid!r}")
    if qid in seen:
        raise QAEvalError(f"{where}: duplicate question id {qid!r}")
    seen.add(qid)


def _squad_questions(data, path):
    if not isinstance(data, list):
        raise QAEvalError(f"data file {path}: 'data' must be a list of articles")
    questions, seen = [], set()
    for a_i, article in enumerate(data):
        where = f"data file {path}: data[{a_i}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise QAEvalError(f"{where}: article without a 'paragraphs' list")
        for p_i, para in enumerate(article["paragraphs"]):
            p_where = f"{where}.paragraphs[{p_i}]"
            if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                raise QAEvalError(f"{p_where}: paragraph without a 'qas' list")
            for q_i, qa in enumerate(para["qas"]):
                q_where = f"{p_where}.qas[{q_i}]"
                if not isinstance(qa, dict) or "id" not in qa:
                    raise QAEvalError(f"{q_where}: question without an 'id'")
                qid = qa["id"]
                _check_qid(qid, q_where, seen)
                answers = qa.get("answers")
                if not isinstance(answers, list):
                    raise QAEvalError(f"{q_where} (id {qid!r}): 'answers' must be a list (empty when unanswerable)")
                texts = []
                for ans in answers:
                    if not isinstance(ans, dict) or not isinstance(ans.get("text"), str):
                        raise QAEvalError(f"{q_where} (id {qid!r}): every answer needs a string 'text'")
                    texts.append(ans["text"])
                questions.append((qid, texts))
    return questions


def _mrqa_questions(text, path):
    questions, seen = [], set()
    first_record = True
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"data file {path}, line {lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise QAEvalError(f"{where}: malformed JSON (column {e.colno}): {json_error(e)}") from None
        if first_record and isinstance(record, dict) and "header" in record:
            first_record = False
            continue
        first_record = False
        if not isinstance(record, dict) or not isinstance(record.get("qas"), list):
            raise QAEvalError(f"{where}: context record without a 'qas' list")
        for q_i, qa in enumerate(record["qas"]):
            q_where = f"{where}, qas[{q_i}]"
            if not isinstance(qa, dict) or "qid" not in qa:
                raise QAEvalError(f"{q_where}: question without a 'qid'")
            qid = qa["qid"]
            _check_qid(qid, q_where, seen)
            answers = qa.get("answers")
            if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
                raise QAEvalError(f"{q_where} (qid {qid!r}): 'answers' must be a non-empty list of strings")
            questions.append((qid, list(answers)))
    return questions


def load_predictions(path):
    """``{question_id: answer_text}``; every value must be a string."""
    preds = _parse_json_document(_read_text(path, "prediction file"), path, "prediction file")
    if not isinstance(preds, dict):
        raise QAEvalError(f"prediction file {path}: expected a JSON object {{question_id: answer_text}}")
    for qid, value in preds.items():
        if not isinstance(value, str):
            raise QAEvalError(
                f"prediction file {path}: prediction for question id {qid!r} is not a string "
                f"(got {type(value).__name__} {value!r})"
            )
    return preds


def load_na_probs(path):
    """``{question_id: no-answer probability (any finite number)}``, key order kept."""
    probs = _parse_json_document(_read_text(path, "na-prob file"), path, "na-prob file")
    if not isinstance(probs, dict):
        raise QAEvalError(f"na-prob file {path}: expected a JSON object {{question_id: probability}}")
    for qid, value in probs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise QAEvalError(f"na-prob file {path}: value for question id {qid!r} is not a finite number: {value!r}")
    return probs


# --------------------------------------------------------------------------------------------------
# SQuAD 2.0


def squad_v2_raw_scores(questions, preds):
    """Per-question (exact, f1) before any no-answer threshold, for the questions with a prediction.

    Returns (exact_raw, f1_raw, missing_qids)."""
    exact_raw, f1_raw, missing = {}, {}, []
    for qid, answers in questions:
        golds = [a for a in answers if normalize_answer(a)] or [""]
        if qid not in preds:
            missing.append(qid)
            continue
        pred = preds[qid]
        exact_raw[qid] = max(compute_exact(g, pred) for g in golds)
        f1_raw[qid] = max(compute_f1(g, pred) for g in golds)
    return exact_raw, f1_raw, missing


def apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
    """A question whose no-answer probability is strictly above the threshold is answered with
    "no answer": it scores 1 when it really has none, 0 otherwise."""
    out = {}
    for qid, score in scores.items():
        if na_probs[qid] > na_prob_thresh:
            out[qid] = float(not qid_to_has_ans[qid])
        else:
            out[qid] = score
    return out


def find_best_thresh(preds, scores, na_probs, qid_to_has_ans, total=None):
    """The official best-threshold sweep.

    Start with every scored question answered "no answer" (score = number of unanswerable scored
    questions), then walk the questions in increasing no-answer probability (a stable sort, so ties
    keep the na-prob file's order), switching each one to its prediction: an answerable question adds
    its score, an unanswerable one loses 1 if the raw prediction string is non-empty. The threshold is
    the probability of the question at which the running score first reached its maximum (strictly
    greater, so the earliest one wins; 0.0 if never improved). Ids in ``na_probs`` without a score are
    skipped. ``total`` (default: number of scored questions) is the denominator of the x100 score.
    """
    cur = sum(1 for qid in scores if not qid_to_has_ans[qid])
    best, best_thresh = cur, 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            cur += scores[qid]
        elif preds[qid]:
            cur -= 1
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    if total is None:
        total = len(scores)
    return 100.0 * best / total, best_thresh


def _summary(exact, f1, qids):
    total = len(qids)
    return collections.OrderedDict(
        [
            ("exact", 100.0 * sum(exact[q] for q in qids) / total),
            ("f1", 100.0 * sum(f1[q] for q in qids) / total),
            ("total", total),
        ]
    )


def evaluate_squad_v2(questions, preds, na_probs=None, na_prob_thresh=1.0, na_prob_path=None, log=None):
    """SQuAD 2.0 metrics as an OrderedDict with the official keys.

    ``questions``: [(qid, [gold texts])]; ``preds``: {qid: text}; ``na_probs``: {qid: prob} or None
    (then every prediction gets probability 0.0, as in the official script, and no best-threshold
    keys are reported). ``log(msg)`` receives the missing-prediction messages (default: stderr).
    """
    if log is None:
        log = _stderr
    if not questions:
        raise QAEvalError("no questions in the data file")
    qid_to_has_ans = {qid: bool(answers) for qid, answers in questions}
    exact_raw, f1_raw, missing = squad_v2_raw_scores(questions, preds)
    for qid in missing:
        log(f"Missing prediction for {qid}")
    with_probs = na_probs is not None
    if not with_probs:
        na_probs = {qid: 0.0 for qid in preds}
    else:
        for qid in exact_raw:
            if qid not in na_probs:
                where = f"na-prob file {na_prob_path}" if na_prob_path else "na_probs"
                raise QAEvalError(f"{where}: no probability for question id {qid!r} (it has a prediction)")
    exact_thr = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1_thr = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    for qid in missing:  # no prediction: wrong whatever the gold
        exact_thr[qid] = 0.0
        f1_thr[qid] = 0.0
    all_qids = [qid for qid, _ in questions]
    out = _summary(exact_thr, f1_thr, all_qids)
    has_ans = [q for q in all_qids if qid_to_has_ans[q]]
    no_ans = [q for q in all_qids if not qid_to_has_ans[q]]
    for prefix, subset in (("HasAns", has_ans), ("NoAns", no_ans)):
        if subset:
            for key, value in _summary(exact_thr, f1_thr, subset).items():
                out[f"{prefix}_{key}"] = value
    if with_probs:
        total = len(all_qids)
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, thresh = find_best_thresh(preds, raw, na_probs, qid_to_has_ans, total)
            out[f"best_{name}"] = best
            out[f"best_{name}_thresh"] = thresh
    return out


# --------------------------------------------------------------------------------------------------
# MRQA


def evaluate_mrqa(questions, preds, skip_no_answer=False, log=None):
    """MRQA metrics ``{'exact_match', 'f1'}`` (x 100), best over the gold answers of each question.

    A question without a prediction scores 0 (or, with ``skip_no_answer``, is left out of the total).
    """
    if log is None:
        log = _stderr
    em_sum = f1_sum = 0.0
    total = 0
    for qid, golds in questions:
        if qid not in preds:
            if not skip_no_answer:
                log(f"Unanswered question {qid} will receive score 0.")
                total += 1
            continue
        total += 1
        pred = preds[qid]
        em_sum += max(float(mrqa_exact_match(pred, g)) for g in golds)
        f1_sum += max(mrqa_f1(pred, g) for g in golds)
    if total == 0:
        raise QAEvalError("no question to score (empty data file, or every prediction missing with skip_no_answer)")
    return collections.OrderedDict([("exact_match", 100.0 * em_sum / total), ("f1", 100.0 * f1_sum / total)])


# --------------------------------------------------------------------------------------------------
# files in, metrics out


def _stderr(msg):
    print(msg, file=sys.stderr)


def evaluate_files(data_file, pred_file, na_prob_file=None, na_prob_thresh=1.0, skip_no_answer=False, log=None):
    """Evaluate a prediction file against a SQuAD 2.0 or MRQA gold file (detected automatically)."""
    data = load_qa_data(data_file)
    preds = load_predictions(pred_file)
    if data.format == "mrqa":
        if na_prob_file is not None:
            raise QAEvalError(
                f"data file {data_file} is MRQA jsonl: --na-prob-file only applies to SQuAD 2.0 data "
                "(MRQA questions always have an answer)"
            )
        if not data.questions:
            raise QAEvalError(f"data file {data_file}: no questions")
        return evaluate_mrqa(data.questions, preds, skip_no_answer=skip_no_answer, log=log)
    if not data.questions:
        raise QAEvalError(f"data file {data_file}: no questions")
    na_probs = load_na_probs(na_prob_file) if na_prob_file is not None else None
    return evaluate_squad_v2(
        data.questions, preds, na_probs=na_probs, na_prob_thresh=na_prob_thresh, na_prob_path=na_prob_file, log=log
    )
