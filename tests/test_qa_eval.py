"""Tests of the extractive-QA evaluator (fairseq_dpreg.qa.metrics, scripts/qa_eval.py)."""

import collections
import json
import random
import re
import string
import subprocess
import sys

import pytest

from fairseq_dpreg.qa import metrics

REPO_SCRIPTS = __import__("pathlib").Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(REPO_SCRIPTS))
import qa_eval  # noqa: E402  (scripts/qa_eval.py)


# --------------------------------------------------------------------------------------------------
# helpers


def squad_file(path, questions):
    """questions: [(qid, [gold texts])] -> a SQuAD 2.0 JSON file (one article, one paragraph)."""
    qas = [
        {"id": qid, "question": "q?", "answers": [{"text": t, "answer_start": 0} for t in golds]}
        for qid, golds in questions
    ]
    article = {"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}
    path.write_text(json.dumps({"version": "v2.0", "data": [article]}))
    return str(path)


def json_file(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def run_cli(argv, capsys):
    code = qa_eval.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------
# normalisation and single-answer scores


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an   Apple a day ", "apple day"),
        ("Theatre, then anthem", "theatre then anthem"),  # articles only as whole words
        ("A.", ""),
        ("won't-stop", "wontstop"),  # punctuation removed, not replaced by a space
        ("THE\tEnd\n", "end"),
    ],
)
def test_normalize_answer(raw, expected):
    assert metrics.normalize_answer(raw) == expected


def test_exact_and_partial_match():
    assert metrics.compute_exact("Denver Broncos", "the denver broncos.") == 1
    assert metrics.compute_exact("Denver Broncos", "Broncos") == 0
    # gold 2 tokens, pred 1 token, 1 shared: P = 1, R = 1/2 -> F1 = 2 * 1 * 0.5 / 1.5 = 2/3
    assert metrics.compute_f1("Denver Broncos", "Broncos") == pytest.approx(2 / 3)
    # gold 2, pred 3 tokens ("santa clara california"), 2 shared: P = 2/3, R = 1 -> F1 = 0.8
    assert metrics.compute_f1("Santa Clara", "Santa Clara, California") == pytest.approx(0.8)
    assert metrics.compute_f1("Denver Broncos", "Carolina") == 0
    # SQuAD 2.0 empty handling: empty vs empty = 1, empty vs non-empty = 0
    assert metrics.compute_f1("", "") == 1
    assert metrics.compute_f1("", "the") == 1  # "the" normalises to nothing
    assert metrics.compute_f1("", "Broncos") == 0
    # MRQA (SQuAD 1.1) F1 has no empty special case
    assert metrics.mrqa_f1("", "") == 0
    assert metrics.mrqa_exact_match("", "The") is True


def test_repeated_tokens_counted_with_multiplicity():
    # gold "a b b" -> tokens [b, b] after dropping "a"; pred "b" -> overlap 1: P = 1, R = 1/2 -> 2/3
    assert metrics.compute_f1("a b b", "b") == pytest.approx(2 / 3)
    assert metrics.compute_f1("x b b", "b b b") == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))


# --------------------------------------------------------------------------------------------------
# SQuAD 2.0 end to end on a hand-checked example

HAND_QUESTIONS = [
    ("q1", ["Denver Broncos"]),  # pred exact
    ("q2", ["Carolina Panthers", "Panthers Carolina team"]),  # pred "Panthers": F1 max(2/3, 1/2) = 2/3
    ("q3", []),  # unanswerable, pred "" -> right
    ("q4", []),  # unanswerable, pred non-empty -> wrong
]
HAND_PREDS = {"q1": "Denver Broncos", "q2": "Panthers", "q3": "", "q4": "Santa Clara", "unused": "ignored id"}
HAND_NA = {"q1": 0.1, "q2": 0.6, "q3": 0.9, "q4": 0.7}


def test_squad_v2_hand_example_without_na_probs(tmp_path, capsys):
    data = squad_file(tmp_path / "dev.json", HAND_QUESTIONS)
    preds = json_file(tmp_path / "pred.json", HAND_PREDS)
    code, out, err = run_cli([data, preds], capsys)
    assert code == 0, err
    result = json.loads(out, object_pairs_hook=collections.OrderedDict)
    assert list(result) == [
        "exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total",
    ]
    # exact: q1 1, q2 0, q3 1, q4 0 -> 50; f1: 1 + 2/3 + 1 + 0 = 8/3 over 4 -> 66.67
    assert result["exact"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx(100 * (8 / 3) / 4)
    assert result["total"] == 4
    assert result["HasAns_exact"] == pytest.approx(50.0)
    assert result["HasAns_f1"] == pytest.approx(100 * (5 / 3) / 2)
    assert result["HasAns_total"] == 2
    assert result["NoAns_exact"] == pytest.approx(50.0) and result["NoAns_f1"] == pytest.approx(50.0)
    assert result["NoAns_total"] == 2


def test_squad_v2_na_prob_threshold_and_best_thresh(tmp_path, capsys):
    data = squad_file(tmp_path / "dev.json", HAND_QUESTIONS)
    preds = json_file(tmp_path / "pred.json", HAND_PREDS)
    na = json_file(tmp_path / "na.json", HAND_NA)
    out_file = tmp_path / "eval.json"
    argv = [data, preds, "--na-prob-file", na, "--na-prob-thresh", "0.65", "--out-file", out_file]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert json.loads(out_file.read_text()) == result
    # Threshold 0.65: q3 (0.9) and q4 (0.7) are switched to "no answer", right for both (they have
    # none); q1 (0.1) and q2 (0.6) keep their predictions.
    #   exact: 1 + 0 + 1 + 1 = 3 -> 75;  f1: 1 + 2/3 + 1 + 1 = 11/3 -> 91.67
    assert result["exact"] == pytest.approx(75.0)
    assert result["f1"] == pytest.approx(100 * (11 / 3) / 4)
    assert result["NoAns_exact"] == pytest.approx(100.0)
    # Best threshold (raw scores). Start: everything "no answer" -> 2 right (q3, q4).
    # Walk by increasing probability: q1 (0.1) +1 -> 3 (best, thr 0.1); q2 (0.6) F1 +2/3 -> 11/3
    # (best for F1, thr 0.6; EM +0 -> 3, not better); q4 (0.7) answered "Santa Clara" -> -1;
    # q3 (0.9) answered "" -> +0.
    assert result["best_exact"] == pytest.approx(75.0)
    assert result["best_exact_thresh"] == pytest.approx(0.1)
    assert result["best_f1"] == pytest.approx(100 * (11 / 3) / 4)
    assert result["best_f1_thresh"] == pytest.approx(0.6)
    assert list(result)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]


def test_best_thresh_ties_follow_file_order_and_start_from_no_answer_count():
    # qa: answerable, predicted right; qb: unanswerable, predicted non-empty; both probability 0.5.
    questions = [("qa", ["Paris"]), ("qb", [])]
    preds = {"qa": "Paris", "qb": "London"}
    has_ans = {"qa": True, "qb": False}
    exact_raw, _, _ = metrics.squad_v2_raw_scores(questions, preds)
    # na-prob file lists qa first: start 1 (qb right as "no answer"), qa +1 -> 2 (best, thr 0.5), qb -1
    best, thr = metrics.find_best_thresh(preds, exact_raw, {"qa": 0.5, "qb": 0.5}, has_ans)
    assert (best, thr) == (pytest.approx(100.0), 0.5)
    # qb first: 1 - 1 = 0, then +1 = 1, never above the start -> start score, threshold 0.0
    best, thr = metrics.find_best_thresh(preds, exact_raw, {"qb": 0.5, "qa": 0.5}, has_ans)
    assert (best, thr) == (pytest.approx(50.0), 0.0)
    # ids in the na-prob file without a score are skipped
    best, thr = metrics.find_best_thresh(preds, exact_raw, {"zz": 0.0, "qb": 0.5, "qa": 0.5}, has_ans)
    assert (best, thr) == (pytest.approx(50.0), 0.0)


def test_unanswerable_gold_that_normalises_to_empty():
    # "answers" present (so HasAns) but the only text is an article: gold becomes [""]
    questions = [("q", ["The"])]
    result = metrics.evaluate_squad_v2(questions, {"q": ""})
    assert result["exact"] == 100.0 and result["HasAns_total"] == 1 and "NoAns_total" not in result
    # an empty-normalising gold is dropped when a real one exists: "" no longer matches
    result = metrics.evaluate_squad_v2([("q", ["The", "Paris"])], {"q": ""})
    assert result["exact"] == 0.0 and result["f1"] == 0.0


def test_default_na_probs_are_zero_like_official():
    # Without a na-prob file every prediction has probability 0.0: a negative threshold makes every
    # prediction "no answer" (official behaviour), so only unanswerable questions are right.
    result = metrics.evaluate_squad_v2(HAND_QUESTIONS, HAND_PREDS, na_prob_thresh=-1.0)
    assert result["exact"] == pytest.approx(50.0) and result["HasAns_exact"] == 0.0
    assert "best_f1" not in result


def test_missing_prediction_reported_and_counted_wrong(tmp_path, capsys):
    data = squad_file(tmp_path / "dev.json", HAND_QUESTIONS)
    preds = {k: v for k, v in HAND_PREDS.items() if k not in ("q1", "q3")}
    code, out, err = run_cli([data, json_file(tmp_path / "p.json", preds)], capsys)
    assert code == 0
    assert "Missing prediction for q1" in err and "Missing prediction for q3" in err
    result = json.loads(out)
    # q1, q3 wrong; q2 EM 0 / F1 2/3; q4 wrong -> exact 0, f1 (2/3)/4, total stays 4
    assert result["total"] == 4 and result["exact"] == 0.0
    assert result["f1"] == pytest.approx(100 * (2 / 3) / 4)
    assert result["NoAns_exact"] == 0.0


def test_missing_prediction_with_na_probs(tmp_path):
    data = squad_file(tmp_path / "dev.json", HAND_QUESTIONS)
    preds = {k: v for k, v in HAND_PREDS.items() if k != "q3"}
    na = {k: v for k, v in HAND_NA.items() if k != "q3"}  # no probability needed without a prediction
    pred_file = json_file(tmp_path / "p.json", preds)
    na_file = json_file(tmp_path / "n.json", na)
    result = metrics.evaluate_files(data, pred_file, na_prob_file=na_file, log=lambda m: None)
    # start: only q4 (scored, unanswerable) -> 1; q1 +1 -> 2 (thr 0.1); q2 +2/3 (F1); q4 -1.
    # denominators are all 4 questions (q3 counts as wrong)
    assert result["best_exact"] == pytest.approx(50.0) and result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == pytest.approx(100 * (8 / 3) / 4) and result["best_f1_thresh"] == 0.6


# --------------------------------------------------------------------------------------------------
# MRQA


def newsqa_gold(path):
    golds = collections.OrderedDict()
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            for qa in rec.get("qas", []):
                golds[qa["qid"]] = qa["answers"]
    return golds


def test_mrqa_newsqa_sample(shared_data, tmp_path, capsys):
    data_path = shared_data / "newsqa" / "NewsQA_sample.jsonl"
    data = metrics.load_qa_data(str(data_path))
    assert data.format == "mrqa"
    # The file as shipped: 3 contexts, 17 questions, no header line (../shared/data/README.md says
    # "2 contexts, 10 questions" with a header; the file itself is what is tested here).
    assert len(data.questions) == 17
    assert sum(1 for line in open(data_path) if line.strip()) == 3
    golds = newsqa_gold(data_path)
    perfect = {qid: answers[0] for qid, answers in golds.items()}
    code, out, err = run_cli([data_path, json_file(tmp_path / "p.json", perfect)], capsys)
    assert code == 0, err
    assert json.loads(out) == {"exact_match": 100.0, "f1": 100.0}
    # damage two predictions: one to a partial span, one missing
    qids = list(golds)
    partial = dict(perfect)
    partial[qids[0]] = "three videos"  # gold "three different videos": P 1, R 2/3 -> F1 0.8
    del partial[qids[1]]
    result = metrics.evaluate_files(str(data_path), json_file(tmp_path / "p2.json", partial), log=lambda m: None)
    assert result["exact_match"] == pytest.approx(100 * 15 / 17)
    assert result["f1"] == pytest.approx(100 * (15 + 0.8) / 17)
    skipped = metrics.evaluate_files(str(data_path), str(tmp_path / "p2.json"), skip_no_answer=True, log=lambda m: None)
    assert skipped["exact_match"] == pytest.approx(100 * 15 / 16)


def test_mrqa_with_header_and_gzip(tmp_path):
    import gzip

    lines = [
        {"header": {"dataset": "Toy", "split": "dev"}},
        {"context": "c", "qas": [{"qid": "a", "question": "?", "answers": ["The Cat", "a dog"],
                                  "detected_answers": []}]},
        {"context": "d", "qas": [{"qid": "b", "question": "?", "answers": ["blue sky"], "detected_answers": []}]},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    plain = tmp_path / "toy.jsonl"
    plain.write_text(text)
    packed = tmp_path / "toy.jsonl.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    preds = json_file(tmp_path / "p.json", {"a": "dog", "b": "sky"})
    for path in (plain, packed):
        result = metrics.evaluate_files(str(path), preds)
        # a: "dog" == norm("a dog") -> EM 1; b: F1 2*1*0.5/1.5 = 2/3
        assert result["exact_match"] == pytest.approx(50.0)
        assert result["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)


# --------------------------------------------------------------------------------------------------
# bad inputs: exit status 2, message names the file and the record, no traceback


def test_bad_inputs(tmp_path, capsys):
    data = squad_file(tmp_path / "dev.json", HAND_QUESTIONS)
    good_preds = json_file(tmp_path / "pred.json", HAND_PREDS)

    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text(
        json.dumps({"header": {}}) + "\n"
        + json.dumps({"context": "c", "qas": [{"qid": "x", "answers": ["y"]}]}) + "\n"
        + '{"context": "c", "qas": [\n'
    )
    code, _, err = run_cli([bad_jsonl, good_preds], capsys)
    assert code == 2 and "bad.jsonl, line 3" in err and "malformed JSON" in err

    bad_json = tmp_path / "broken.json"
    bad_json.write_text('{"data": [\n  {"paragraphs": [}\n]}')
    code, _, err = run_cli([bad_json, good_preds], capsys)
    assert code == 2 and "broken.json" in err and "line 2" in err

    code, _, err = run_cli([data, json_file(tmp_path / "p_int.json", {"q1": "ok", "q2": 7})], capsys)
    assert code == 2 and "'q2'" in err and "not a string" in err

    code, _, err = run_cli([data, json_file(tmp_path / "p_list.json", ["q1"])], capsys)
    assert code == 2 and "p_list.json" in err

    code, _, err = run_cli([tmp_path / "nope.json", good_preds], capsys)
    assert code == 2 and "nope.json" in err

    no_answers = json_file(tmp_path / "noans.json",
                           {"data": [{"paragraphs": [{"qas": [{"id": "z9", "question": "?"}]}]}]})
    code, _, err = run_cli([no_answers, good_preds], capsys)
    assert code == 2 and "'z9'" in err and "answers" in err

    na_short = json_file(tmp_path / "na_short.json", {"q1": 0.1, "q2": 0.2, "q3": 0.3})
    code, _, err = run_cli([data, good_preds, "--na-prob-file", na_short], capsys)
    assert code == 2 and "na_short.json" in err and "'q4'" in err

    na_bad = json_file(tmp_path / "na_bad.json", {"q1": "high"})
    code, _, err = run_cli([data, good_preds, "-n", na_bad], capsys)
    assert code == 2 and "'q1'" in err

    newsqa_like = tmp_path / "m.jsonl"
    records = [{"header": {}}, {"qas": [{"qid": "a", "answers": ["b"]}]}]
    newsqa_like.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = run_cli([newsqa_like, good_preds, "--na-prob-file", na_short], capsys)
    assert code == 2 and "MRQA" in err

    not_qa = json_file(tmp_path / "other.json", {"rows": []})
    code, _, err = run_cli([not_qa, good_preds], capsys)
    assert code == 2 and "unrecognised format" in err


def test_cli_subprocess_exit_code_and_no_traceback(tmp_path):
    data = squad_file(tmp_path / "dev.json", HAND_QUESTIONS)
    preds = json_file(tmp_path / "p.json", {"q1": ["list"]})
    proc = subprocess.run(
        [sys.executable, str(REPO_SCRIPTS / "qa_eval.py"), data, preds], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "'q1'" in proc.stderr
    ok = subprocess.run(
        [sys.executable, str(REPO_SCRIPTS / "qa_eval.py"), data, json_file(tmp_path / "p2.json", HAND_PREDS)],
        capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["total"] == 4


# --------------------------------------------------------------------------------------------------
# independent reference: the official SQuAD 2.0 algorithm written again, compared on random cases


def _ref_norm(s):
    s = s.lower().translate(str.maketrans("", "", string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _ref_f1(gold, pred):
    g = _ref_norm(gold).split() if gold else []
    p = _ref_norm(pred).split() if pred else []
    if not g or not p:
        return int(g == p)
    common = 0
    remaining = list(g)
    for tok in p:
        if tok in remaining:
            remaining.remove(tok)
            common += 1
    if common == 0:
        return 0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def _ref_official(questions, preds, na_probs, thresh, with_best):
    """Official evaluate-v2.0 semantics, assuming a prediction for every question."""
    has_ans = collections.OrderedDict((qid, len(ans) > 0) for qid, ans in questions)
    ex_raw, f1_raw = {}, {}
    for qid, ans in questions:
        golds = [a for a in ans if _ref_norm(a)]
        if len(golds) == 0:
            golds = [""]
        ex_raw[qid] = max(int(_ref_norm(a) == _ref_norm(preds[qid])) for a in golds)
        f1_raw[qid] = max(_ref_f1(a, preds[qid]) for a in golds)
    probs = na_probs if na_probs is not None else {q: 0.0 for q in preds}

    def thr(raw):
        return {q: (float(not has_ans[q]) if probs[q] > thresh else s) for q, s in raw.items()}

    ex, f1 = thr(ex_raw), thr(f1_raw)
    res = collections.OrderedDict()

    def block(prefix, ids):
        if not ids:
            return
        res[prefix + "exact"] = 100.0 * sum(ex[q] for q in ids) / len(ids)
        res[prefix + "f1"] = 100.0 * sum(f1[q] for q in ids) / len(ids)
        res[prefix + "total"] = len(ids)

    block("", list(ex))
    block("HasAns_", [q for q in has_ans if has_ans[q]])
    block("NoAns_", [q for q in has_ans if not has_ans[q]])
    if with_best:
        for name, raw in (("exact", ex_raw), ("f1", f1_raw)):
            score = sum(1 for q in has_ans if not has_ans[q])
            best, best_t = score, 0.0
            order = sorted(probs.items(), key=lambda kv: kv[1])
            for q, p in order:
                if q not in raw:
                    continue
                score += raw[q] if has_ans[q] else (-1 if preds[q] else 0)
                if score > best:
                    best, best_t = score, p
            res["best_" + name] = 100.0 * best / len(raw)
            res["best_" + name + "_thresh"] = best_t
    return res


WORDS = ["the", "The", "a", "an", "An", "Denver", "broncos", "Broncos!", "Panthers,", "50", "Super", "bowl",
         "gold.", "--", "won't", "theatre", "anthem", "x", "y", "y", "(z)", "Ärger", "ÉTÉ"]


def _random_text(rng, lo=1, hi=4):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _random_case(rng):
    questions, preds, na_probs = [], {}, {}
    for i in range(rng.randint(1, 25)):
        qid = f"q{i}"
        golds = [] if rng.random() < 0.35 else [_random_text(rng) for _ in range(rng.randint(1, 3))]
        if golds and rng.random() < 0.1:
            golds.append(rng.choice(["the", "A", "."]))  # normalises to nothing
        questions.append((qid, golds))
        r = rng.random()
        if r < 0.25:
            preds[qid] = ""
        elif r < 0.5 and golds:
            preds[qid] = rng.choice(golds) + rng.choice(["", ".", " the", "!"])
        else:
            preds[qid] = _random_text(rng)
        na_probs[qid] = rng.choice([0, 1, 0.1, 0.25, 0.5, 0.5, 0.75, rng.random()])  # ties and ints
    for j in range(rng.randint(0, 3)):
        na_probs[f"extra{j}"] = rng.random()
        preds[f"extra{j}"] = "ignored"
    items = list(na_probs.items())
    rng.shuffle(items)
    return questions, preds, dict(items)


def test_matches_independent_reference_on_random_cases():
    rng = random.Random(20240613)
    for _ in range(300):
        questions, preds, na_probs = _random_case(rng)
        thresh = rng.choice([1.0, 0.5, rng.random(), -0.1])
        with_best = rng.random() < 0.7
        mine = metrics.evaluate_squad_v2(questions, preds, na_probs=na_probs if with_best else None,
                                         na_prob_thresh=thresh, log=lambda m: None)
        ref = _ref_official(questions, preds, na_probs if with_best else None, thresh, with_best)
        assert list(mine) == list(ref)
        for key in ref:
            assert mine[key] == pytest.approx(ref[key], abs=1e-6), (key, questions, preds, na_probs)
        for qid, golds in questions:
            for g in golds + [""]:
                assert metrics.compute_f1(g, preds[qid]) == pytest.approx(_ref_f1(g, preds[qid]), abs=1e-9)
