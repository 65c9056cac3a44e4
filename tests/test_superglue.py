"""Tests of SuperGLUE preprocessing and metrics (fairseq_dpreg.superglue, scripts/superglue_*.py)."""

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq_dpreg import superglue
from fairseq_dpreg.superglue import metrics as sg_metrics
from fairseq_dpreg.superglue.tasks import wsc_marked_text

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import superglue_eval  # noqa: E402
import superglue_prepare  # noqa: E402

# task -> (released val rows, examples written, label counts)
DEV = {
    "BoolQ": (3270, 3270, {"true": 2033, "false": 1237}),
    "CB": (56, 56, {"contradiction": 28, "entailment": 23, "neutral": 5}),
    "COPA": (100, 100, {"0": 55, "1": 45}),
    "MultiRC": (83, 4848, {"false": 2773, "true": 2075}),  # 83 paragraphs, 953 questions, 4848 options
    "RTE": (277, 277, {"entailment": 146, "not_entailment": 131}),
    "WiC": (638, 638, {"false": 319, "true": 319}),
    "WSC": (104, 104, {"false": 66, "true": 38}),
}


def read_lines(path):
    text = Path(path).read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


@pytest.fixture(scope="module")
def prepared(shared_data, tmp_path_factory):
    """Every shared dev file prepared once through the command-line entry point."""
    root = tmp_path_factory.mktemp("superglue")
    for task in DEV:
        code = superglue_prepare.main(
            ["--task", task.lower(), "--input-dir", str(shared_data / "superglue" / task),
             "--output-dir", str(root / task), "--splits", "val"]
        )
        assert code == 0, task
    return root


@pytest.mark.parametrize("task", list(DEV))
def test_prepare_dev_counts_and_layout(task, prepared, shared_data):
    rows, n_examples, label_counts = DEV[task]
    src = shared_data / "superglue" / task / "val.jsonl"
    assert sum(1 for line in open(src) if line.strip()) == rows
    out = prepared / task
    spec = superglue.get_task(task)
    info = json.loads((out / "info.json").read_text())
    assert info["task"] == task and info["fairseq_task"] == spec.fairseq_task
    assert info["splits"] == {"val": {"examples": n_examples, "labelled": True}}
    for k in range(spec.num_inputs):
        lines = read_lines(out / f"val.input{k}")
        assert len(lines) == n_examples
        assert all(line.strip() for line in lines)
    assert not (out / f"val.input{spec.num_inputs}").exists()
    labels = read_lines(out / "val.label")
    assert collections.Counter(labels) == label_counts
    ids = [json.loads(line) for line in read_lines(out / "val.ids")]
    assert len(ids) == n_examples and all("idx" in i for i in ids)


def test_prepare_dev_content(prepared, shared_data):
    first = lambda task, name: read_lines(prepared / task / name)  # noqa: E731
    boolq = json.loads(open(shared_data / "superglue/BoolQ/val.jsonl").readline())
    assert first("BoolQ", "val.input0")[0] == boolq["passage"]
    assert first("BoolQ", "val.input1")[0] == boolq["question"]
    # COPA: idx 0 is an "effect" question -> "so"; the label indexes input1/input2
    assert first("COPA", "val.input0")[0] == "The man turned on the faucet so"
    assert first("COPA", "val.input1")[0] == "The toilet filled with water."
    assert first("COPA", "val.input2")[0] == "Water flowed from the spout."
    copa = [json.loads(line) for line in open(shared_data / "superglue/COPA/val.jsonl")]
    cause = next(i for i, r in enumerate(copa) if r["question"] == "cause")
    assert first("COPA", "val.input0")[cause].endswith(" because")
    # WiC: the occurrence at start/end is marked, surface form kept
    assert first("WiC", "val.input0")[1] == "Businessmen of every [stripe] joined in opposition to the proposal."
    assert first("WiC", "val.input1")[1] == "They earned their [stripes] in Kuwait."
    # WSC: candidate _x_, pronoun [x]; idx 42 has span2_index off by one; idx 95 nests the pronoun
    wsc = first("WSC", "val.input0")
    assert "_Mr. Moncrieff_ visited" in wsc[1] and "requires [his] financial" in wsc[1]
    assert "iron _safe_ . Some day they might want to use [it] ," in wsc[42]
    assert "and _[their] mothers_ are very worried." in wsc[95]
    assert all(line.count("[") == 1 and line.count("_") >= 2 for line in wsc)
    # MultiRC: ids keep paragraph / question / answer idx; 953 question groups
    ids = [json.loads(line) for line in read_lines(prepared / "MultiRC" / "val.ids")]
    assert ids[0] == {"idx": 0, "question": 0, "answer": 0}
    assert len({(i["idx"], i["question"]) for i in ids}) == 953
    assert first("MultiRC", "val.input1")[0].endswith("? No")


@pytest.mark.parametrize("task", list(DEV))
def test_gold_predictions_score_100(task, prepared, shared_data, tmp_path, capsys):
    """Labels and ids written by prepare, turned into a prediction file, give perfect scores."""
    out = prepared / task
    ids = [json.loads(line) for line in read_lines(out / "val.ids")]
    labels = read_lines(out / "val.label")
    pred = tmp_path / "pred.jsonl"
    with open(pred, "w") as f:
        for i, label in zip(ids, labels):
            f.write(json.dumps({**i, "label": int(label) if task == "COPA" else label}) + "\n")
    code = superglue_eval.main(["--task", task, "--gold", str(shared_data / "superglue" / task / "val.jsonl"),
                                "--pred", str(pred)])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    scores = {k: v for k, v in result.items() if k not in ("task",) and not k.startswith("total")}
    assert scores and all(v == 100.0 for v in scores.values()), result


# --------------------------------------------------------------------------------------------------
# metrics on hand cases


def test_cb_macro_f1_hand_case():
    golds = ["entailment", "entailment", "contradiction", "neutral"]
    preds = ["entailment", "contradiction", "contradiction", "entailment"]
    # entailment: TP 1, FP 1 (4th), FN 1 (2nd) -> 2/(2+1+1) = 0.5
    # contradiction: TP 1, FP 1 (2nd), FN 0 -> 2/3;  neutral: TP 0, FN 1 -> 0
    expected = 100 * (0.5 + 2 / 3 + 0) / 3
    assert sg_metrics.macro_f1(golds, preds, superglue.tasks.CB_LABELS) == pytest.approx(expected)
    assert sg_metrics.accuracy(golds, preds) == pytest.approx(50.0)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert expected == pytest.approx(
        100 * sklearn_metrics.f1_score(golds, preds, average="macro", labels=list(superglue.tasks.CB_LABELS))
    )


def test_cb_eval_file_with_missing_prediction(shared_data, tmp_path, capsys):
    gold = shared_data / "superglue/CB/val.jsonl"
    rows = [json.loads(line) for line in open(gold)]
    pred = tmp_path / "cb.jsonl"
    # predict "contradiction" everywhere except one missing row (idx 0, gold contradiction)
    pred.write_text("".join(json.dumps({"idx": r["idx"], "label": "contradiction"}) + "\n" for r in rows[1:]))
    result = superglue.evaluate("CB", str(gold), str(pred))
    assert "1 of 56 gold examples have no prediction" in capsys.readouterr().err
    # contradiction: TP 27, FP 28 (23 + 5), FN 1 -> 54/(54+28+1) = 54/83; the other classes 0
    assert result["accuracy"] == pytest.approx(100 * 27 / 56)
    assert result["f1_macro"] == pytest.approx(100 * (54 / 83) / 3)


def test_multirc_f1a_em_hand_case():
    items = [
        (("p", 1), "true", "true"), (("p", 1), "false", "false"), (("p", 1), "true", "false"),  # q1: FN
        (("p", 2), "false", "false"), (("p", 2), "true", "true"),  # q2 all right
        (("p", 3), "false", "true"),  # q3: FP
    ]
    # pooled TP 2, FP 1, FN 1 -> F1a = 4/6; EM: only q2 of 3 questions
    result = sg_metrics.multirc_scores(items)
    assert result["f1a"] == pytest.approx(100 * 4 / 6)
    assert result["em"] == pytest.approx(100 / 3)


def test_multirc_nested_submission_format(shared_data, tmp_path):
    gold = shared_data / "superglue/MultiRC/val.jsonl"
    pred = tmp_path / "multirc.jsonl"
    with open(pred, "w") as f:
        for line in open(gold):
            rec = json.loads(line)
            questions = [
                {"idx": q["idx"], "answers": [{"idx": a["idx"], "label": 1} for a in q["answers"]]}
                for q in rec["passage"]["questions"]
            ]
            f.write(json.dumps({"idx": rec["idx"], "passage": {"questions": questions}}) + "\n")
    result = superglue.evaluate("MultiRC", str(gold), str(pred))
    # all-"true": recall 1, precision 2075/4848 -> F1a = 2*2075/(2075+4848)
    assert result["f1a"] == pytest.approx(100 * 2 * 2075 / (2075 + 4848))
    assert result["total_answers"] == 4848 and result["total_questions"] == 953


RECORD_ROWS = [
    {
        "idx": 0, "source": "toy",
        "passage": {
            "text": "Barack Obama met Angela Merkel in Berlin.\n@highlight\nObama visits Berlin",
            # spans are [start, end] inclusive; "Berlin" appears twice, "Obama" is a shorter mention
            "entities": [{"start": 0, "end": 11}, {"start": 17, "end": 29}, {"start": 34, "end": 39},
                         {"start": 53, "end": 57}, {"start": 66, "end": 71}],
        },
        "qas": [
            {"idx": 10, "query": "@placeholder said the talks went well.",
             "answers": [{"start": 0, "end": 11, "text": "Barack Obama"}, {"start": 53, "end": 57, "text": "Obama"}]},
            {"idx": 11, "query": "The meeting took place in @placeholder.",
             "answers": [{"start": 34, "end": 39, "text": "Berlin"}]},
        ],
    },
    {
        "idx": 1, "source": "toy",
        "passage": {"text": "New York City is big.", "entities": [{"start": 0, "end": 12}]},
        "qas": [{"idx": 12, "query": "@placeholder never sleeps.",
                 "answers": [{"start": 0, "end": 12, "text": "New York City"}]}],
    },
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_record_prepare_and_eval(tmp_path):
    data = tmp_path / "ReCoRD"
    data.mkdir()
    write_jsonl(data / "val.jsonl", RECORD_ROWS)
    info = superglue.prepare_task("record", str(data), str(tmp_path / "out"), ["val"])
    # passage 0: 4 distinct entities x 2 queries; passage 1: 1 entity x 1 query
    assert info["splits"]["val"]["examples"] == 9
    out = tmp_path / "out"
    ids = [json.loads(line) for line in read_lines(out / "val.ids")]
    assert [i["entity"] for i in ids[:4]] == ["Barack Obama", "Angela Merkel", "Berlin", "Obama"]
    assert ids[4] == {"idx": 11, "passage": 0, "entity": "Barack Obama"}
    expected = ["true", "false", "false", "true"] + ["false", "false", "true", "false"] + ["true"]
    assert read_lines(out / "val.label") == expected
    assert read_lines(out / "val.input1")[6] == "The meeting took place in Berlin."
    assert read_lines(out / "val.input0")[0] == "Barack Obama met Angela Merkel in Berlin. - Obama visits Berlin"

    preds = write_jsonl(tmp_path / "pred.jsonl", [{"idx": 10, "label": "obama"}, {"idx": 11, "label": "the Berlin!"}])
    result = superglue.evaluate("ReCoRD", str(data / "val.jsonl"), str(preds), log=lambda m: None)
    # q10 right (normalised "obama"), q11 right, q12 missing -> 0
    assert result["em"] == pytest.approx(200 / 3) and result["f1"] == pytest.approx(200 / 3)
    assert result["total"] == 3


def test_record_scores_hand_case():
    golds = [["Barack Obama", "Obama"], ["New York City"], ["Berlin"]]
    preds = ["obama", "York", None]
    # q1 EM/F1 1; q2 EM 0, F1: P 1, R 1/3 -> 0.5; q3 missing 0
    result = sg_metrics.record_scores(golds, preds)
    assert result["f1"] == pytest.approx(100 * 1.5 / 3)
    assert result["em"] == pytest.approx(100 / 3)


def test_wsc_marking_rules():
    text = "The trophy would not fit in the suitcase because it was too big ."
    target = {"span1_index": 0, "span1_text": "the trophy", "span2_index": 9, "span2_text": "it"}
    assert wsc_marked_text(text, target, "x") == "_The trophy_ would not fit in the suitcase because [it] was too big ."
    # "he" must not match the longer word "her"
    with pytest.raises(superglue.SuperGLUEError, match="x: span2"):
        target = {"span1_index": 0, "span1_text": "Ann", "span2_index": 2, "span2_text": "he"}
        wsc_marked_text("Ann saw her .", target, "x")
    # glued punctuation stays outside the marker
    target = {"span1_index": 0, "span1_text": "Bob", "span2_index": 2, "span2_text": "him"}
    assert wsc_marked_text("Bob saw him.", target, "x") == "_Bob_ saw [him]."


# --------------------------------------------------------------------------------------------------
# errors


def prepare_cli(task, src, out, splits=None):
    argv = ["--task", task, "--input-dir", str(src), "--output-dir", str(out)]
    return superglue_prepare.main(argv + (["--splits", splits] if splits else []))


def test_unknown_label_names_file_and_line(tmp_path, capsys):
    rows = [
        {"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0},
        {"premise": "p", "hypothesis": "h", "label": "maybe", "idx": 1},
    ]
    src = tmp_path / "in"
    src.mkdir()
    write_jsonl(src / "val.jsonl", rows)
    code = prepare_cli("CB", src, tmp_path / "o", "val")
    err = capsys.readouterr().err
    assert code == 2
    assert f"{src / 'val.jsonl'}:2" in err and "'maybe'" in err

    (src / "val.jsonl").write_text(json.dumps(rows[0]) + "\n{not json\n")
    code = prepare_cli("CB", src, tmp_path / "o")
    err = capsys.readouterr().err
    assert code == 2 and "train.jsonl: no such file" in err
    code = prepare_cli("CB", src, tmp_path / "o", "val")
    err = capsys.readouterr().err
    assert code == 2 and f"{src / 'val.jsonl'}:2: malformed JSON" in err

    copa = {"premise": "p.", "choice1": "a", "choice2": "b", "question": "why", "label": 0, "idx": 0}
    write_jsonl(src / "val.jsonl", [copa])
    code = prepare_cli("COPA", src, tmp_path / "o", "val")
    assert code == 2 and ":1: unknown COPA question 'why'" in capsys.readouterr().err

    code = prepare_cli("GLUE", src, tmp_path / "o")
    assert code == 2 and "unknown SuperGLUE task" in capsys.readouterr().err


def test_unlabelled_split_and_mixed_labels(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rows = [{"premise": "p", "hypothesis": "h", "idx": i} for i in range(3)]
    write_jsonl(src / "test.jsonl", rows)
    out = tmp_path / "o"
    (out).mkdir()
    (out / "test.label").write_text("stale\n")
    info = superglue.prepare_task("RTE", str(src), str(out), ["test"])
    assert info["splits"]["test"] == {"examples": 3, "labelled": False}
    assert not (out / "test.label").exists() and len(read_lines(out / "test.input1")) == 3
    rows[2]["label"] = "entailment"
    write_jsonl(src / "test.jsonl", rows)
    with pytest.raises(superglue.SuperGLUEError, match=r"test.jsonl:3: labelled and unlabelled"):
        superglue.prepare_task("RTE", str(src), str(out), ["test"])


def test_duplicate_ids_are_refused_at_preparation(shared_data, tmp_path, capsys):
    """A repeated id stops prepare, naming the file, the line of the repeat and the first's line (it used to
    surface only in superglue_eval.py, after training)."""
    src = tmp_path / "in"
    src.mkdir()
    rte = [json.loads(line) for line in open(shared_data / "superglue/RTE/val.jsonl")][:4]
    rte[3] = dict(rte[3], idx=rte[1]["idx"])
    write_jsonl(src / "train.jsonl", rte)
    write_jsonl(src / "val.jsonl", rte[:3])
    code = prepare_cli("RTE", src, tmp_path / "o")
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"superglue_prepare.py: error: {src / 'train.jsonl'}:4: duplicate idx {rte[1]['idx']} "
                   "(first at line 2)\n")

    # MultiRC: the paragraph idx per line, and (paragraph, question) / (paragraph, question, answer) within it
    multirc = [json.loads(line) for line in open(shared_data / "superglue/MultiRC/val.jsonl")][:3]
    cases = [
        (lambda rows: rows[2].update(idx=rows[0]["idx"]), ":3: duplicate idx 0 (first at line 1)"),
        (lambda rows: rows[1]["passage"]["questions"][1].update(idx=rows[1]["passage"]["questions"][0]["idx"]),
         ":2: duplicate idx {p} question {q} (first at line 2)"),
        (lambda rows: rows[1]["passage"]["questions"][0]["answers"][1].update(
            idx=rows[1]["passage"]["questions"][0]["answers"][0]["idx"]),
         ":2: duplicate idx {p} question {q} answer {a} (first at line 2)"),
    ]
    for change, message in cases:
        rows = json.loads(json.dumps(multirc))
        change(rows)
        write_jsonl(src / "val.jsonl", rows)
        q = rows[1]["passage"]["questions"][0]
        message = message.format(p=rows[1]["idx"], q=q["idx"], a=q["answers"][0]["idx"])
        with pytest.raises(superglue.SuperGLUEError, match=re.escape(f"{src / 'val.jsonl'}{message}")):
            superglue.prepare_task("MultiRC", str(src), str(tmp_path / "o"), ["val"])

    # ReCoRD: the query idx (qas[].idx) is the key of a prediction; distinct in the whole file
    rows = json.loads(json.dumps(RECORD_ROWS))
    rows[1]["qas"][0]["idx"] = 11
    write_jsonl(src / "val.jsonl", rows)
    with pytest.raises(superglue.SuperGLUEError, match=re.escape(f"{src / 'val.jsonl'}:2: duplicate query idx 11 "
                                                                 "(first at line 1)")):
        superglue.prepare_task("ReCoRD", str(src), str(tmp_path / "o"), ["val"])
    rows[1]["qas"][0]["idx"] = 12
    rows[1]["idx"] = 0
    write_jsonl(src / "val.jsonl", rows)
    with pytest.raises(superglue.SuperGLUEError, match=re.escape(f"{src / 'val.jsonl'}:2: duplicate idx 0")):
        superglue.prepare_task("ReCoRD", str(src), str(tmp_path / "o"), ["val"])


def test_real_files_have_unique_ids(shared_data):
    """Every released file here prepares under the uniqueness rule (WSC train included: its line 235 has a
    line break in a span text where the text has a space)."""
    for path in sorted((shared_data / "superglue").glob("*/*.jsonl")):
        assert superglue.build_examples(path.parent.name, str(path)), path


def test_wsc_span_with_a_line_break_is_found():
    text = 'The user changed his password from " a " to " b c " as it was easy to remember.'
    target = {"span1_index": 11, "span1_text": "b\nc", "span2_index": 15, "span2_text": "it"}
    marked = wsc_marked_text(text, target, "t")
    assert marked == 'The user changed his password from " a " to " _b c_ " as [it] was easy to remember.', marked


def test_eval_prediction_errors(shared_data, tmp_path, capsys):
    gold = str(shared_data / "superglue/RTE/val.jsonl")
    cases = [
        ([{"idx": 0, "label": "entailment"}, {"idx": 0, "label": "entailment"}], ":2: duplicate prediction for idx 0"),
        ([{"idx": 0, "label": "yes"}], ":1: unknown RTE label 'yes'"),
        ([{"idx": 9999, "label": "entailment"}], ":1: prediction for idx 9999, which is not in the gold file"),
        ([{"label": "entailment"}], ":1: prediction needs 'idx' and 'label'"),
    ]
    for rows, message in cases:
        pred = write_jsonl(tmp_path / "p.jsonl", rows)
        code = superglue_eval.main(["--task", "RTE", "--gold", gold, "--pred", str(pred)])
        err = capsys.readouterr().err
        assert code == 2 and f"{pred}{message}" in err, err


def test_scripts_run_as_subprocess(shared_data, tmp_path):
    out = tmp_path / "cb"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "superglue_prepare.py"), "--task", "CB",
         "--input-dir", str(shared_data / "superglue/CB"), "--output-dir", str(out), "--splits", "val"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    pred = write_jsonl(tmp_path / "p.jsonl", [{"idx": 0, "label": 3}])
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "superglue_eval.py"), "--task", "CB",
         "--gold", str(shared_data / "superglue/CB/val.jsonl"), "--pred", str(pred)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "p.jsonl:1" in proc.stderr
    help_text = subprocess.run([sys.executable, str(SCRIPTS / "superglue_eval.py"), "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    assert '{"idx": 0, "label": 1}' in help_text and "MultiRC" in help_text
