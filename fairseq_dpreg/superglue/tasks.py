"""SuperGLUE jsonl -> raw-text fairseq inputs, framed the way the RoBERTa SuperGLUE recipes do.

Every task turns one released record into one or more *examples*; an example is a tuple of raw-text
inputs (``input0``, ``input1``, ...), a label (``None`` for an unlabelled split such as ``test``) and
an id object that maps the example back to the SuperGLUE record (and to the submission format).

Framing (inputs are raw text, one example per line; BPE and ``fairseq-preprocess`` come later):

========  ===================  ==========================================================  ================
task      fairseq task         inputs                                                      label
========  ===================  ==========================================================  ================
BoolQ     sentence_prediction  input0 = passage, input1 = question (``<s> passage </s></s>  true / false
                               question </s>``, passage first as in RoBERTa's BoolQ runs)
CB        sentence_prediction  input0 = premise, input1 = hypothesis                       entailment /
                                                                                           contradiction /
                                                                                           neutral
RTE       sentence_prediction  input0 = premise, input1 = hypothesis                       entailment /
                                                                                           not_entailment
WiC       sentence_prediction  input0 = sentence1, input1 = sentence2, the target word's    true / false
                               occurrence (``start``/``end`` character offsets) wrapped in
                               ``[`` ``]`` in each, e.g. ``They earned their [stripes] in
                               Kuwait.``
COPA      sentence_ranking     input0 = premise without its final ``.``/``!``/``?`` plus     0 / 1 (index of
                               the connector (``because`` for a *cause* question, ``so``   the right
                               for an *effect* one); input1, input2 = choice1, choice2     choice)
MultiRC   sentence_prediction  one example per answer option: input0 = paragraph,          true / false
                               input1 = question + " " + answer
ReCoRD    sentence_prediction  one example per distinct candidate entity of the passage    true / false
                               (``passage.entities`` spans, end inclusive, deduplicated by
                               text): input0 = passage (``@highlight`` lines turned into
                               ``- ``), input1 = query with ``@placeholder`` replaced by
                               the candidate; true when the candidate's text is a gold
                               answer text
WSC       sentence_prediction  input0 = text with the candidate (span1) wrapped in ``_``    true / false
                               ``_`` and the pronoun (span2) in ``[`` ``]``, the marking of
                               fairseq's WSC recipe, e.g. ``... no longer requires [his]
                               financial support.``; one example per (candidate, pronoun) record
========  ===================  ==========================================================  ================

Ids (one JSON object per line in ``{split}.ids``): ``{"idx": record idx}`` for BoolQ, CB, COPA, RTE,
WiC and WSC; ``{"idx": paragraph idx, "question": question idx, "answer": answer idx}`` for MultiRC
(the question idx groups the options for EM); ``{"idx": query idx, "passage": passage idx,
"entity": candidate text}`` for ReCoRD (group by ``idx``, predict the best-scoring entity).

Line breaks inside texts (``\\n``, ``\\r``, U+2028, ...) become spaces so that every example stays
on one line. Labels are validated: an unknown label raises :class:`SuperGLUEError` naming the file and
the line; so does an id seen twice in one file (:func:`unique_ids`), with the line of its first occurrence.
"""

import collections
import json
import re

__all__ = ["SuperGLUEError", "Example", "TASKS", "TaskSpec", "get_task", "read_jsonl", "build_examples"]


class SuperGLUEError(ValueError):
    """Bad SuperGLUE input (the message names the file and the line)."""


Example = collections.namedtuple("Example", ["inputs", "label", "ids"])

TaskSpec = collections.namedtuple("TaskSpec", ["name", "fairseq_task", "num_inputs", "labels", "builder"])

# characters that str.splitlines() (and so some readers) treat as line ends
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")

BOOL_LABELS = ("false", "true")
CB_LABELS = ("contradiction", "entailment", "neutral")
RTE_LABELS = ("entailment", "not_entailment")
COPA_CONNECTORS = {"cause": "because", "effect": "so"}
WIC_MARK = ("[", "]")
WSC_CANDIDATE_MARK = ("_", "_")
WSC_PRONOUN_MARK = ("[", "]")


def one_line(text):
    """The text with every run of line-break characters replaced by one space."""
    return _LINE_BREAKS.sub(" ", text)


def read_jsonl(path):
    """[(line number, record dict)] of a jsonl file; blank lines are skipped."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise SuperGLUEError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise SuperGLUEError(f"{path}: not UTF-8 text (byte {e.start})") from None
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise SuperGLUEError(f"{path}:{lineno}: malformed JSON (column {e.colno}): {e.msg}") from None
        if not isinstance(record, dict):
            raise SuperGLUEError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        records.append((lineno, record))
    return records


# --------------------------------------------------------------------------------------------------
# field and label helpers (``where`` is "FILE:LINE")


def _field(record, key, where, kind=str):
    if key not in record:
        raise SuperGLUEError(f"{where}: missing field {key!r}")
    value = record[key]
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise SuperGLUEError(f"{where}: field {key!r} should be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def bool_label(value, where, task):
    """JSON true/false or the strings "true"/"false" (any case) -> "true"/"false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in BOOL_LABELS:
        return value.lower()
    raise SuperGLUEError(f"{where}: unknown {task} label {value!r} (expected true or false)")


def choice_label(value, allowed, where, task):
    if isinstance(value, str) and value in allowed:
        return value
    raise SuperGLUEError(f"{where}: unknown {task} label {value!r} (expected one of {', '.join(allowed)})")


def binary_int_label(value, where, task):
    """0/1 (or JSON false/true) -> "false"/"true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value in (0, 1):
        return BOOL_LABELS[value]
    raise SuperGLUEError(f"{where}: unknown {task} label {value!r} (expected 0 or 1)")


def _label(record, where, convert):
    """Converted label, or None when the record has no label (unlabelled split)."""
    if "label" not in record:
        return None
    return convert(record["label"], where)


def _idx(record, where):
    return {"idx": _field(record, "idx", where, int)}


# --------------------------------------------------------------------------------------------------
# per-task framing: builder(record, where) -> [Example]


def _boolq(record, where):
    passage = _field(record, "passage", where)
    question = _field(record, "question", where)
    label = _label(record, where, lambda v, w: bool_label(v, w, "BoolQ"))
    return [Example((one_line(passage), one_line(question)), label, _idx(record, where))]


def _premise_hypothesis(task, labels):
    def build(record, where):
        premise = _field(record, "premise", where)
        hypothesis = _field(record, "hypothesis", where)
        label = _label(record, where, lambda v, w: choice_label(v, labels, w, task))
        return [Example((one_line(premise), one_line(hypothesis)), label, _idx(record, where))]

    return build


def mark_span(text, start, end, marks, where, what):
    """``text`` with ``text[start:end]`` wrapped in the two marker strings."""
    if not (0 <= start < end <= len(text)):
        raise SuperGLUEError(f"{where}: {what} span [{start}, {end}) outside the sentence of length {len(text)}")
    return text[:start] + marks[0] + text[start:end] + marks[1] + text[end:]


def _wic(record, where):
    marked = []
    for k in ("1", "2"):
        sentence = _field(record, "sentence" + k, where)
        start = _field(record, "start" + k, where, int)
        end = _field(record, "end" + k, where, int)
        marked.append(one_line(mark_span(sentence, start, end, WIC_MARK, where, "sentence" + k)))
    _field(record, "word", where)
    label = _label(record, where, lambda v, w: bool_label(v, w, "WiC"))
    return [Example(tuple(marked), label, _idx(record, where))]


_FINAL_PUNCT = re.compile(r"[.!?]+\s*$")


def copa_context(premise, question, where):
    """Premise without its final punctuation, then the connector of the question type."""
    if question not in COPA_CONNECTORS:
        raise SuperGLUEError(f"{where}: unknown COPA question {question!r} (expected cause or effect)")
    return _FINAL_PUNCT.sub("", premise.strip()) + " " + COPA_CONNECTORS[question]


def _copa(record, where):
    premise = _field(record, "premise", where)
    question = _field(record, "question", where)
    choices = [_field(record, "choice1", where), _field(record, "choice2", where)]

    def convert(value, w):
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return str(value)
        raise SuperGLUEError(f"{w}: unknown COPA label {value!r} (expected 0 or 1)")

    label = _label(record, where, convert)
    inputs = (one_line(copa_context(premise, question, where)),) + tuple(one_line(c) for c in choices)
    return [Example(inputs, label, _idx(record, where))]


def _multirc(record, where):
    p_idx = _field(record, "idx", where, int)
    passage = _field(record, "passage", where, dict)
    text = one_line(_field(passage, "text", where + " passage"))
    examples = []
    for q_i, q in enumerate(_field(passage, "questions", where + " passage", list)):
        q_where = f"{where} (passage.questions[{q_i}])"
        if not isinstance(q, dict):
            raise SuperGLUEError(f"{q_where}: expected an object")
        question = one_line(_field(q, "question", q_where))
        q_idx = _field(q, "idx", q_where, int)
        for a_i, a in enumerate(_field(q, "answers", q_where, list)):
            a_where = f"{where} (passage.questions[{q_i}].answers[{a_i}])"
            if not isinstance(a, dict):
                raise SuperGLUEError(f"{a_where}: expected an object")
            answer = one_line(_field(a, "text", a_where))
            a_idx = _field(a, "idx", a_where, int)
            label = _label(a, a_where, lambda v, w: binary_int_label(v, w, "MultiRC"))
            examples.append(
                Example((text, question + " " + answer), label, {"idx": p_idx, "question": q_idx, "answer": a_idx})
            )
    return examples


RECORD_PLACEHOLDER = "@placeholder"


def record_passage_text(text):
    """ReCoRD passage on one line: each "@highlight" line marker becomes "- "."""
    return one_line(text.replace("@highlight\n", "- "))


def record_candidates(passage, where):
    """Distinct entity strings of a ReCoRD passage (spans are [start, end] inclusive), first-seen order."""
    text = _field(passage, "text", where + " passage")
    seen = collections.OrderedDict()
    for e_i, ent in enumerate(_field(passage, "entities", where + " passage", list)):
        e_where = f"{where} (passage.entities[{e_i}])"
        if not isinstance(ent, dict):
            raise SuperGLUEError(f"{e_where}: expected an object")
        start = _field(ent, "start", e_where, int)
        end = _field(ent, "end", e_where, int)
        if not (0 <= start <= end < len(text)):
            raise SuperGLUEError(f"{e_where}: entity span [{start}, {end}] outside the passage of length {len(text)}")
        seen.setdefault(text[start : end + 1], None)
    return list(seen)


def _record(record, where):
    p_idx = _field(record, "idx", where, int)
    passage = _field(record, "passage", where, dict)
    candidates = record_candidates(passage, where)
    context = record_passage_text(passage["text"])
    examples = []
    for q_i, qa in enumerate(_field(record, "qas", where, list)):
        q_where = f"{where} (qas[{q_i}])"
        if not isinstance(qa, dict):
            raise SuperGLUEError(f"{q_where}: expected an object")
        query = _field(qa, "query", q_where)
        if RECORD_PLACEHOLDER not in query:
            raise SuperGLUEError(f"{q_where}: query has no {RECORD_PLACEHOLDER}")
        q_idx = _field(qa, "idx", q_where, int)
        golds = None
        if "answers" in qa:
            golds = set(record_answer_texts(qa, q_where))
        for cand in candidates:
            label = None if golds is None else ("true" if cand in golds else "false")
            filled = one_line(query.replace(RECORD_PLACEHOLDER, cand))
            examples.append(Example((context, filled), label, {"idx": q_idx, "passage": p_idx, "entity": cand}))
    return examples


def record_answer_texts(qa, where):
    answers = _field(qa, "answers", where, list)
    texts = []
    for a_i, ans in enumerate(answers):
        if not isinstance(ans, dict) or not isinstance(ans.get("text"), str):
            raise SuperGLUEError(f"{where} (answers[{a_i}]): every answer needs a string 'text'")
        texts.append(ans["text"])
    return texts


def _wsc_locate(tokens, index, span_text, where, what):
    """(first token, number of tokens) of a WSC span in the space-separated ``tokens``.

    The released index is tried first, then its neighbours (a few released records are off by one,
    e.g. WSC val idx 42); the comparison ignores case and allows punctuation glued after the span
    ("him." for "him") but not a longer word ("her" for "he")."""
    width = len(span_text.split(" "))
    want = span_text.lower()
    for start in (index, index + 1, index - 1):
        if start < 0 or start + width > len(tokens):
            continue
        joined = " ".join(tokens[start : start + width]).lower()
        if joined.startswith(want) and (len(joined) == len(want) or not joined[len(want)].isalnum()):
            return start, width
    raise SuperGLUEError(
        f"{where}: {what} {span_text!r} not found at token {index} of the text "
        f"(tokens there: {' '.join(tokens[index:index + width])!r})"
    )


def wsc_marked_text(text, target, where):
    """The WSC text with the candidate wrapped in ``_ _`` and the pronoun in ``[ ]``.

    A pronoun inside the candidate span is allowed (released val idx 95: "their" inside "their
    mothers") and marked nested, ``_[their] mothers_``; partially crossing spans are an error."""
    tokens = text.split(" ")
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok) + 1
    spans = []  # (char start, char end, rank, marks); rank 0 = candidate, 1 = pronoun
    for rank, (key, marks, what) in enumerate(
        (("1", WSC_CANDIDATE_MARK, "span1 (candidate)"), ("2", WSC_PRONOUN_MARK, "span2 (pronoun)"))
    ):
        # a line break inside a released span stands for the text's space (WSC train idx 234)
        span_text = _field(target, f"span{key}_text", where + " target").replace("\n", " ")
        index = _field(target, f"span{key}_index", where + " target", int)
        if not span_text.strip():
            raise SuperGLUEError(f"{where}: empty {what}")
        first, _ = _wsc_locate(tokens, index, span_text, where, what)
        spans.append((starts[first], starts[first] + len(span_text), rank, marks))
    (a0, a1, _, _), (b0, b1, _, _) = spans
    nested = (a0 <= b0 and b1 <= a1) or (b0 <= a0 and a1 <= b1)
    if not nested and a0 < b1 and b0 < a1:
        raise SuperGLUEError(f"{where}: candidate and pronoun spans cross each other")
    inserts = []
    for c0, c1, rank, marks in spans:
        length = c1 - c0
        inserts.append(((c0, 1, -length, rank), marks[0]))  # outer span opens first
        inserts.append(((c1, 0, length, -rank), marks[1]))  # inner span closes first
    inserts.sort(key=lambda item: item[0])
    out, prev = [], 0
    for (at, _, _, _), mark in inserts:
        out.append(text[prev:at])
        out.append(mark)
        prev = at
    out.append(text[prev:])
    return "".join(out)


def _wsc(record, where):
    text = _field(record, "text", where)
    target = _field(record, "target", where, dict)
    marked = one_line(wsc_marked_text(text, target, where))
    label = _label(record, where, lambda v, w: bool_label(v, w, "WSC"))
    return [Example((marked,), label, _idx(record, where))]


TASKS = collections.OrderedDict(
    (spec.name, spec)
    for spec in [
        TaskSpec("BoolQ", "sentence_prediction", 2, BOOL_LABELS, _boolq),
        TaskSpec("CB", "sentence_prediction", 2, CB_LABELS, _premise_hypothesis("CB", CB_LABELS)),
        TaskSpec("COPA", "sentence_ranking", 3, ("0", "1"), _copa),
        TaskSpec("MultiRC", "sentence_prediction", 2, BOOL_LABELS, _multirc),
        TaskSpec("ReCoRD", "sentence_prediction", 2, BOOL_LABELS, _record),
        TaskSpec("RTE", "sentence_prediction", 2, RTE_LABELS, _premise_hypothesis("RTE", RTE_LABELS)),
        TaskSpec("WiC", "sentence_prediction", 2, BOOL_LABELS, _wic),
        TaskSpec("WSC", "sentence_prediction", 1, BOOL_LABELS, _wsc),
    ]
)


def get_task(name):
    """TaskSpec by name, case-insensitive (``boolq``, ``BoolQ``, ...)."""
    for key, spec in TASKS.items():
        if key.lower() == str(name).lower():
            return spec
    raise SuperGLUEError(f"unknown SuperGLUE task {name!r} (expected one of {', '.join(TASKS)})")


def unique_ids(task, record):
    """[(key, name)] of the ids of a (valid) record that must be unique in its file: the record's ``idx``;
    MultiRC also its (paragraph, question) and (paragraph, question, answer) idx, the keys of the
    predictions and of EM's grouping; ReCoRD also its query idx (``qas[].idx``), the key of a prediction."""
    p = record["idx"]
    ids = [(p, f"idx {p}")]
    if task == "MultiRC":
        for q in record["passage"]["questions"]:
            ids.append(((p, q["idx"]), f"idx {p} question {q['idx']}"))
            ids += [((p, q["idx"], a["idx"]), f"idx {p} question {q['idx']} answer {a['idx']}") for a in q["answers"]]
    elif task == "ReCoRD":
        ids += [(("query", qa["idx"]), f"query idx {qa['idx']}") for qa in record["qas"]]
    return ids


def build_examples(task, path):
    """All examples of one jsonl file; a split is either fully labelled or not labelled at all, and its
    ids are unique (:func:`unique_ids`)."""
    spec = get_task(task)
    examples, first_labelled, first_unlabelled = [], None, None
    first_line = {}
    for lineno, record in read_jsonl(path):
        where = f"{path}:{lineno}"
        built = spec.builder(record, where)
        for key, name in unique_ids(spec.name, record):
            if key in first_line:
                raise SuperGLUEError(f"{where}: duplicate {name} (first at line {first_line[key]})")
            first_line[key] = lineno
        for ex in built:
            if ex.label is None:
                first_unlabelled = first_unlabelled or where
            else:
                first_labelled = first_labelled or where
            if first_labelled and first_unlabelled:
                raise SuperGLUEError(
                    f"{where}: labelled and unlabelled examples mixed in one file (first labelled example "
                    f"at {first_labelled}, first unlabelled at {first_unlabelled}); a split is labelled "
                    "throughout or not at all"
                )
            examples.append(ex)
    return examples
