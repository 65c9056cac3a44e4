"""Readers for extractive-QA corpora (SQuAD 2.0 JSON, MRQA jsonl), a Quasar-T -> MRQA converter and a
synthetic SQuAD 2.0 generator.

Everything here is plain Python (no fairseq, no torch), so the readers can be used and tested alone.

Conventions
- Character offsets are Python ``str`` indices (code points) into the context, ``end`` exclusive.
  SQuAD gives ``answer_start`` plus the text; MRQA gives ``char_spans`` with an *inclusive* end, which
  the reader converts.
- An answer is kept only when ``context[start:end]`` is exactly its text. Anything else is bad input and
  raises :class:`QADataError` naming the file and the record (question id), unless the caller asked to
  skip bad answers (``on_bad_answer="skip"``), in which case the answer is dropped and counted.
"""

import gzip
import io
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..atomic import write_atomic as write_text_atomic

logger = logging.getLogger(__name__)


class QADataError(ValueError):
    """Bad QA input: the message names the file and the record (line number or question id)."""


@dataclass
class Answer:
    text: str
    start: int  # character offset into the context
    end: int  # exclusive


@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    context_id: int  # examples sharing a context share this index (order of first appearance)
    answers: List[Answer] = field(default_factory=list)
    is_impossible: bool = False


@dataclass
class ReadStats:
    contexts: int = 0
    questions: int = 0
    unanswerable: int = 0
    bad_answers_skipped: int = 0
    questions_skipped: int = 0


def open_text(path: str):
    """Open a text file for reading as UTF-8; ``.gz`` files are decompressed."""
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def detect_format(path: str) -> str:
    """``squad`` or ``mrqa``, from the first non-blank character and the first line of the file."""
    with open_text(path) as f:
        first = ""
        for line in f:
            if line.strip():
                first = line
                break
    if not first:
        raise QADataError(f"{path}: empty file")
    stripped = first.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and ("header" in obj or "context" in obj):
            return "mrqa"
    return "squad"


def json_error(e: json.JSONDecodeError) -> str:
    """json's message without its dangling "at" (the position is given separately as line and column)."""
    return e.msg[:-3] + " here" if e.msg.endswith(" at") else e.msg


def _check_answer(context: str, text: str, start: int, path: str, qid: str, what: str) -> Optional[str]:
    """Return an error message when the offsets do not give ``text`` inside ``context``, else None."""
    if not isinstance(start, int) or isinstance(start, bool):
        return f"{what}: answer start {start!r} is not an integer"
    if not isinstance(text, str) or not text:
        return f"{what}: empty or non-string answer text {text!r}"
    end = start + len(text)
    if start < 0 or end > len(context):
        return f"{what}: answer span [{start}, {end}) is outside the context (length {len(context)})"
    found = context[start:end]
    if found != text:
        return f"{what}: answer offsets do not match the context text: expected {text!r}, context has {found!r}"
    return None


def _bad_answer(msg: str, path: str, qid: str, on_bad_answer: str, stats: ReadStats):
    full = f"{path}: question id {qid!r}: {msg}"
    if on_bad_answer == "skip":
        logger.warning("skipping answer: %s", full)
        stats.bad_answers_skipped += 1
        return
    raise QADataError(full)


def _require(obj, key, typ, path, where):
    if not isinstance(obj, dict) or key not in obj:
        raise QADataError(f"{path}: {where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, typ):
        raise QADataError(f"{path}: {where}: field {key!r} should be {getattr(typ, '__name__', typ)}, "
                          f"got {type(value).__name__}")
    return value


def read_squad2(path: str, on_bad_answer: str = "error", stats: Optional[ReadStats] = None) -> List[QAExample]:
    """Read a SQuAD 2.0 (or 1.1) JSON file: ``data[].paragraphs[].{context, qas[]}``.

    Each qa needs ``id``, ``question`` and ``answers`` (``[{"text", "answer_start"}]``); ``is_impossible``
    defaults to False (SQuAD 1.1). Answers of unanswerable questions are ignored (SQuAD 2.0 keeps
    ``plausible_answers`` separately). An answerable question without any valid answer is an error
    (or skipped, with ``on_bad_answer="skip"``). Question ids must be unique.
    """
    if on_bad_answer not in ("error", "skip"):
        raise ValueError(f"on_bad_answer must be 'error' or 'skip', got {on_bad_answer!r}")
    stats = stats if stats is not None else ReadStats()
    with open_text(path) as f:
        raw = f.read()
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise QADataError(f"{path}: line {e.lineno} column {e.colno}: malformed JSON: {json_error(e)}") from None
    data = _require(doc, "data", list, path, "top level")
    examples: List[QAExample] = []
    seen = set()
    context_id = 0
    for ai, article in enumerate(data):
        paragraphs = _require(article, "paragraphs", list, path, f"data[{ai}]")
        for pi, para in enumerate(paragraphs):
            where = f"data[{ai}].paragraphs[{pi}]"
            context = _require(para, "context", str, path, where)
            qas = _require(para, "qas", list, path, where)
            stats.contexts += 1
            for qi, qa in enumerate(qas):
                qwhere = f"{where}.qas[{qi}]"
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qid, str) or not qid:
                    raise QADataError(f"{path}: {qwhere}: missing or non-string question 'id'")
                qwhere = f"question id {qid!r}"
                if qid in seen:
                    raise QADataError(f"{path}: {qwhere}: duplicate question id")
                seen.add(qid)
                question = _require(qa, "question", str, path, qwhere)
                impossible = bool(qa.get("is_impossible", False))
                answers: List[Answer] = []
                if not impossible:
                    raw_answers = _require(qa, "answers", list, path, qwhere)
                    for k, ans in enumerate(raw_answers):
                        if not isinstance(ans, dict):
                            _bad_answer(f"answers[{k}] is not an object", path, qid, on_bad_answer, stats)
                            continue
                        text, start = ans.get("text"), ans.get("answer_start")
                        err = _check_answer(context, text, start, path, qid, f"answers[{k}]")
                        if err:
                            _bad_answer(err, path, qid, on_bad_answer, stats)
                            continue
                        answers.append(Answer(text, start, start + len(text)))
                    if not answers:
                        if on_bad_answer == "skip":
                            logger.warning("%s: %s: no valid answer, question skipped", path, qwhere)
                            stats.questions_skipped += 1
                            continue
                        raise QADataError(f"{path}: {qwhere}: answerable question without any answer")
                else:
                    stats.unanswerable += 1
                examples.append(QAExample(qid, question, context, context_id, answers, impossible))
                stats.questions += 1
            context_id += 1
    return examples


def iter_jsonl(path: str) -> Iterator[Tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; malformed JSON names file and line."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise QADataError(f"{path}: line {lineno} column {e.colno}: malformed JSON: {json_error(e)}") from None
            yield lineno, obj


def read_mrqa(path: str, on_bad_answer: str = "error", stats: Optional[ReadStats] = None) -> List[QAExample]:
    """Read an MRQA 2019 jsonl file (optional ``{"header": ...}`` first line, then one context per line).

    Each line: ``context`` and ``qas``; each qa: ``qid``, ``question``, ``detected_answers`` with
    ``char_spans`` ``[[start, end]]`` (end inclusive) and ``text``. The answer kept is the context
    substring at the span; it must equal the detected text (case-insensitively: some MRQA sources
    record the answer string rather than its surface form; the context substring is what is used).
    A question with ``is_impossible: true`` or no detected answer is unanswerable. The same qid may
    appear in several contexts (one question, several retrieved passages): prediction then picks the
    best span over all of them.
    """
    if on_bad_answer not in ("error", "skip"):
        raise ValueError(f"on_bad_answer must be 'error' or 'skip', got {on_bad_answer!r}")
    stats = stats if stats is not None else ReadStats()
    examples: List[QAExample] = []
    context_id = 0
    seen_in_context = set()
    for lineno, obj in iter_jsonl(path):
        if isinstance(obj, dict) and "header" in obj and "context" not in obj:
            continue
        where = f"line {lineno}"
        context = _require(obj, "context", str, path, where)
        qas = _require(obj, "qas", list, path, where)
        stats.contexts += 1
        seen_in_context.clear()
        for qi, qa in enumerate(qas):
            qid = qa.get("qid", qa.get("id")) if isinstance(qa, dict) else None
            if not isinstance(qid, str) or not qid:
                raise QADataError(f"{path}: {where}: qas[{qi}]: missing or non-string 'qid'")
            if qid in seen_in_context:
                raise QADataError(f"{path}: {where}: question id {qid!r}: duplicate qid in one context")
            seen_in_context.add(qid)
            qwhere = f"{where}: question id {qid!r}"
            question = _require(qa, "question", str, path, qwhere)
            detected = qa.get("detected_answers", [])
            if not isinstance(detected, list):
                raise QADataError(f"{path}: {qwhere}: 'detected_answers' should be a list")
            answers: List[Answer] = []
            for k, det in enumerate(detected):
                spans = det.get("char_spans") if isinstance(det, dict) else None
                if not isinstance(spans, list):
                    _bad_answer(f"{where}: detected_answers[{k}] has no 'char_spans' list", path, qid,
                                on_bad_answer, stats)
                    continue
                text = det.get("text")
                for span in spans:
                    if (not isinstance(span, (list, tuple)) or len(span) != 2
                            or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)):
                        _bad_answer(f"{where}: bad char span {span!r}", path, qid, on_bad_answer, stats)
                        continue
                    s, e = span[0], span[1] + 1
                    if s < 0 or e > len(context) or e <= s:
                        _bad_answer(f"{where}: char span {span!r} is outside the context (length "
                                    f"{len(context)})", path, qid, on_bad_answer, stats)
                        continue
                    found = context[s:e]
                    if isinstance(text, str) and found != text and found.lower() != text.lower():
                        _bad_answer(f"{where}: answer offsets do not match the context text: expected "
                                    f"{text!r}, context has {found!r} at {span!r}", path, qid,
                                    on_bad_answer, stats)
                        continue
                    answers.append(Answer(found, s, e))
            impossible = bool(qa.get("is_impossible", False)) or not answers
            if impossible and not qa.get("is_impossible", False) and detected:
                # every detected answer was bad and skipped: do not turn the question into a no-answer one
                stats.questions_skipped += 1
                continue
            if impossible:
                answers = []
                stats.unanswerable += 1
            examples.append(QAExample(qid, question, context, context_id, answers, impossible))
            stats.questions += 1
        context_id += 1
    return examples


def read_qa_file(path: str, fmt: str = "auto", on_bad_answer: str = "error",
                 stats: Optional[ReadStats] = None) -> List[QAExample]:
    """Read SQuAD JSON or MRQA jsonl (``fmt``: auto, squad, mrqa)."""
    if not os.path.isfile(path):
        raise QADataError(f"{path}: no such file")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "squad":
        return read_squad2(path, on_bad_answer=on_bad_answer, stats=stats)
    if fmt == "mrqa":
        return read_mrqa(path, on_bad_answer=on_bad_answer, stats=stats)
    raise ValueError(f"unknown QA format {fmt!r} (auto, squad or mrqa)")


# ----------------------------------------------------------------------------------------------------
# Quasar-T (Dhingra et al. 2017) release format -> MRQA jsonl

def _answer_pattern(answer: str, case_sensitive: bool):
    flags = 0 if case_sensitive else re.IGNORECASE
    # whole-word match: no letter/digit right before or after the answer
    return re.compile(r"(?<!\w)" + re.escape(answer) + r"(?!\w)", flags)


def quasar_to_mrqa(questions_path: str, contexts_path: str, split: str = "train", case_sensitive: bool = False,
                   max_contexts: int = 0) -> Tuple[dict, List[dict], Dict[str, int]]:
    """Convert Quasar-T's own release to MRQA records.

    ``questions_path``: jsonl with ``uid``, ``question``, ``answer``; ``contexts_path``: jsonl with ``uid``
    and ``contexts`` as ``[score, text]`` pairs (both may be gzipped). For each question, every context
    containing the answer as a whole word (case-insensitive unless ``case_sensitive``) becomes one MRQA
    record with that question; all its occurrences are its ``char_spans`` (inclusive end). The question id
    is the Quasar ``uid``, shared by its records (prediction aggregates over them). ``max_contexts`` > 0
    keeps only the first that many answer-bearing contexts (release order). Questions without any such
    context are dropped. Returns ``(header, records, counts)``.
    """
    questions: Dict[str, dict] = {}
    order: List[str] = []
    for lineno, obj in iter_jsonl(questions_path):
        where = f"line {lineno}"
        uid = _require(obj, "uid", str, questions_path, where)
        where = f"{where}: uid {uid!r}"
        _require(obj, "question", str, questions_path, where)
        answer = _require(obj, "answer", str, questions_path, where)
        if not answer.strip():
            raise QADataError(f"{questions_path}: {where}: empty answer")
        if uid in questions:
            raise QADataError(f"{questions_path}: {where}: duplicate uid")
        questions[uid] = obj
        order.append(uid)
    records: List[dict] = []
    counts = {"questions": len(order), "questions_kept": 0, "contexts_seen": 0, "contexts_kept": 0,
              "questions_without_contexts": 0}
    kept_questions = set()
    seen_ctx_uids = set()
    for lineno, obj in iter_jsonl(contexts_path):
        where = f"line {lineno}"
        uid = _require(obj, "uid", str, contexts_path, where)
        where = f"{where}: uid {uid!r}"
        contexts = _require(obj, "contexts", list, contexts_path, where)
        if uid not in questions:
            raise QADataError(f"{contexts_path}: {where}: no question with this uid in {questions_path}")
        seen_ctx_uids.add(uid)
        q = questions[uid]
        pattern = _answer_pattern(q["answer"].strip(), case_sensitive)
        n_kept = 0
        for k, item in enumerate(contexts):
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], str)):
                raise QADataError(f"{contexts_path}: {where}: contexts[{k}] should be a [score, text] pair")
            text = item[1]
            counts["contexts_seen"] += 1
            spans = [(m.start(), m.end()) for m in pattern.finditer(text)]
            if not spans:
                continue
            by_text: Dict[str, List[List[int]]] = {}
            for s, e in spans:
                by_text.setdefault(text[s:e], []).append([s, e - 1])
            records.append({
                "id": f"{uid}#{k}",
                "context": text,
                "qas": [{
                    "qid": uid,
                    "question": q["question"],
                    "answers": [q["answer"]],
                    "detected_answers": [{"text": t, "char_spans": sp} for t, sp in by_text.items()],
                }],
            })
            counts["contexts_kept"] += 1
            n_kept += 1
            if max_contexts and n_kept >= max_contexts:
                break
        if n_kept:
            kept_questions.add(uid)
    counts["questions_kept"] = len(kept_questions)
    counts["questions_without_contexts"] = sum(1 for u in order if u not in seen_ctx_uids)
    header = {"header": {"dataset": "QuasarT", "split": split, "mrqa_split": split,
                         "source": os.path.basename(questions_path)}}
    return header, records, counts


def write_jsonl_atomic(path: str, objects: Sequence[dict]):
    """Write one JSON object per line (UTF-8, non-ASCII kept), via a temporary file and rename."""
    write_text_atomic(path, "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects))


# ----------------------------------------------------------------------------------------------------
# Synthetic SQuAD 2.0 data (offline smoke tests and the CPU recipe)

_PEOPLE = ["Alice", "Bruno", "Chloé", "Dmitri", "Emeka", "Fatima", "Giulia", "Hiro", "Ingrid", "José",
           "Kwame", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Søren", "Tariq"]
_CITIES = ["Zürich", "São Paulo", "Kraków", "Reykjavík", "Montréal", "Nairobi", "Oslo", "Lima",
           "東京", "Hanoi", "Accra", "Málaga", "Tromsø", "Cork", "Izmir", "Perth"]
_JOBS = ["baker", "pilot", "chemist", "violinist", "carpenter", "nurse", "journalist", "architect",
         "gardener", "judge", "librarian", "surgeon"]
_COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "silver", "teal"]
_FACTS = [
    ("lives in {city}", "Where does {p} live?", "city"),
    ("works as a {job}", "What is {p}'s job?", "job"),
    ("owns a {colour} bicycle", "What colour is {p}'s bicycle?", "colour"),
]
_FILLERS = ["It rained on Tuesday.", "The museum opened  in 1987.", "Nobody remembers the old café.",
            "A naïve plan rarely works.", "Trains leave every hour."]


def make_synthetic_squad2(n_contexts: int, seed: int = 1, unanswerable_rate: float = 0.3,
                          title: str = "synthetic") -> dict:
    """A small SQuAD 2.0 document about made-up people, with unanswerable questions.

    Contexts mix Unicode names, double spaces and newlines, so the offset handling is exercised. Each
    context states a few facts; questions ask about them, and some ask about a person not mentioned
    (``is_impossible``). Deterministic for a given seed.
    """
    rng = random.Random(seed)
    paragraphs = []
    for c in range(n_contexts):
        people = rng.sample(_PEOPLE, 4)
        present, absent = people[:3], people[3]
        pieces, facts = [], []
        for p in present:
            kind = rng.randrange(len(_FACTS))
            values = {"city": rng.choice(_CITIES), "job": rng.choice(_JOBS), "colour": rng.choice(_COLOURS)}
            template, question, slot = _FACTS[kind]
            sentence_prefix = f"{p} "
            sentence = sentence_prefix + template.format(**values) + "."
            offset = sum(len(x) for x in pieces)
            answer = values[slot]
            start = offset + sentence.index(answer, len(sentence_prefix))
            pieces.append(sentence)
            facts.append((question.format(p=p), answer, start, kind))
            sep = rng.choice([" ", "  ", "\n", " "])
            if rng.random() < 0.5:
                sep += rng.choice(_FILLERS) + " "
            pieces.append(sep)
        context = "".join(pieces).rstrip()
        qas = []
        for k, (question, answer, start, _kind) in enumerate(facts):
            assert context[start:start + len(answer)] == answer
            qas.append({"id": f"{title}-{c}-{k}", "question": question, "is_impossible": False,
                        "answers": [{"text": answer, "answer_start": start}]})
        if rng.random() < unanswerable_rate * 3:
            _template, question, _slot = _FACTS[rng.randrange(len(_FACTS))]
            qas.append({"id": f"{title}-{c}-na", "question": question.format(p=absent), "is_impossible": True,
                        "answers": [], "plausible_answers": []})
        paragraphs.append({"context": context, "qas": qas})
    return {"version": "v2.0", "data": [{"title": title, "paragraphs": paragraphs}]}
