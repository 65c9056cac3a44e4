"""Tests for fairseq_dpreg/gigaword/rouge.py and its command line scripts/rouge.py (ROUGE-1/2/L with Google's
rouge-score, Porter stemmer)."""
import importlib.util
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from nltk.stem import porter
from rouge_score import tokenize

from fairseq_dpreg.gigaword import rouge

SCRIPT = Path(__file__).parents[1] / "scripts" / "rouge.py"


def _load():
    spec = importlib.util.spec_from_file_location("dpreg_rouge_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cli = _load()


def f1(overlap, n_hyp, n_ref):
    p, r = overlap / n_hyp, overlap / n_ref
    return 0.0 if p + r == 0 else 100.0 * 2 * p * r / (p + r)


def one(hyp, ref):
    per = rouge.score_lines([hyp], [ref])
    return {m: float(per[m][0]) for m in rouge.METRICS}


# ---------------------------------------------------------------- hand-computed cases

def test_hand_computed_cat_mat():
    # hyp: the cat sat on the mat   (6 tokens, 5 bigrams)
    # ref: the cat was on the mat   (6 tokens, 5 bigrams)
    # unigram overlap: the x2, cat, on, mat = 5
    # bigram overlap: "the cat", "on the", "the mat" = 3
    # LCS: the cat on the mat = 5
    s = one("the cat sat on the mat", "the cat was on the mat")
    assert s["rouge1"] == pytest.approx(f1(5, 6, 6), abs=1e-9)  # 83.33
    assert s["rouge2"] == pytest.approx(f1(3, 5, 5), abs=1e-9)  # 60.00
    assert s["rougeL"] == pytest.approx(f1(5, 6, 6), abs=1e-9)


def test_hand_computed_unequal_lengths_and_order():
    # hyp: a b c d   ref: d c b a e  -> unigram overlap 4, no shared bigram, LCS 1
    s = one("a b c d", "d c b a e")
    assert s["rouge1"] == pytest.approx(f1(4, 4, 5), abs=1e-9)
    assert s["rouge2"] == 0.0
    assert s["rougeL"] == pytest.approx(f1(1, 4, 5), abs=1e-9)


def test_stemming_matches_fully():
    # Porter: running -> run, dogs -> dog; without the stemmer nothing would match
    s = one("running dogs", "run dog")
    assert s == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}


def test_identical_and_disjoint():
    assert set(one("police arrest five in drugs raid", "police arrest five in drugs raid").values()) == {100.0}
    assert set(one("stocks fall sharply", "heavy rain in paris").values()) == {0.0}


def test_empty_hypothesis_scores_zero_and_is_counted():
    assert set(one("", "some reference words").values()) == {0.0}
    per = rouge.score_lines(["hello world", ""], ["hello world", "other words"])
    summary = rouge.summarize(per, n_boot=50, seed=0)
    for m in rouge.METRICS:
        assert len(per[m]) == 2
        assert summary[m]["f"] == pytest.approx(50.0)


# ---------------------------------------------------------------- independent re-implementation

def _ref_ngram_f1(h, r, n):
    hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
    rc = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
    if not hc or not rc:
        return 0.0
    return f1(sum((hc & rc).values()), sum(hc.values()), sum(rc.values()))


def _ref_lcs_f1(h, r):
    if not h or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for x in h:
        cur = [0]
        for j, y in enumerate(r, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return f1(prev[-1], len(h), len(r))


def _random_corpus(n, seed):
    words = ["the", "police", "Arrested", "arrests", "arresting", "man", "men", "in", "Paris", "paris",
             "on", "Monday", "said", "says", "saying", "u.s.", "oil", "prices", "price", "rise", "rising",
             "rose", "##", "unk", "#", ",", "'s", "-lrb-", "world", "cup", "cups", "wins", "winning", "a"]
    rnd = random.Random(seed)
    hyps, refs = [], []
    for i in range(n):
        ref = " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 14)))
        if i % 5 == 0:  # a noisy copy of the reference: substitutions and drops
            hyp = " ".join(w if rnd.random() < 0.7 else rnd.choice(words)
                           for w in ref.split() if rnd.random() < 0.85)
        else:
            hyp = " ".join(rnd.choice(words) for _ in range(rnd.randint(0, 12)))
        hyps.append(hyp)
        refs.append(ref)
    return hyps, refs


def test_agrees_with_independent_implementation():
    hyps, refs = _random_corpus(48, seed=3)
    per = rouge.score_lines(hyps, refs)
    stemmer = porter.PorterStemmer()
    nonzero = 0
    for i, (h, r) in enumerate(zip(hyps, refs)):
        ht, rt = tokenize.tokenize(h, stemmer), tokenize.tokenize(r, stemmer)
        expect = {"rouge1": _ref_ngram_f1(ht, rt, 1), "rouge2": _ref_ngram_f1(ht, rt, 2),
                  "rougeL": _ref_lcs_f1(ht, rt)}
        for m in rouge.METRICS:
            assert abs(per[m][i] - expect[m]) < 1e-9, (i, m, h, r)
        nonzero += expect["rouge2"] > 0
    assert nonzero >= 5  # the corpus really exercises partial matches
    means = rouge.summarize(per, n_boot=10, seed=0)
    for m in rouge.METRICS:
        assert means[m]["f"] == pytest.approx(float(np.mean(per[m])), abs=1e-9)


# ---------------------------------------------------------------- bootstrap

def test_bootstrap_ci_contains_mean_and_is_deterministic():
    hyps, refs = _random_corpus(60, seed=7)
    per = rouge.score_lines(hyps, refs)
    a = rouge.summarize(per, n_boot=1000, seed=1)
    b = rouge.summarize(per, n_boot=1000, seed=1)
    c = rouge.summarize(per, n_boot=1000, seed=2)
    assert a == b
    assert a != c
    for m in rouge.METRICS:
        assert a[m]["ci_low"] < a[m]["f"] < a[m]["ci_high"]


def test_bootstrap_width_is_plausible():
    # 400 lines scoring 0 or 100 half the time: std error of the mean = 100*sqrt(.25/400) = 2.5,
    # so the 95% interval is about +-1.96*2.5 = +-4.9 around 50.
    scores = np.array([0.0, 100.0] * 200)
    per = {m: scores for m in rouge.METRICS}
    s = rouge.summarize(per, n_boot=2000, seed=0)["rouge1"]
    assert s["f"] == 50.0
    assert 50 - 4.9 * 1.15 < s["ci_low"] < 50 - 4.9 * 0.85
    assert 50 + 4.9 * 0.85 < s["ci_high"] < 50 + 4.9 * 1.15
    const = rouge.summarize({m: np.full(10, 40.0) for m in rouge.METRICS}, n_boot=100, seed=0)
    assert const["rougeL"] == {"f": 40.0, "ci_low": 40.0, "ci_high": 40.0}


# ---------------------------------------------------------------- command line

def _write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def test_read_lines_strips_only_the_newline(tmp_path):
    p = _write(tmp_path / "x.txt", "a \n\nb\x0bc\u2028d\n")
    assert rouge.read_lines(p, "hypothesis") == ["a ", "", "b\x0bc\u2028d"]
    q = _write(tmp_path / "y.txt", "a\nb")  # no final newline
    assert rouge.read_lines(q, "hypothesis") == ["a", "b"]


def test_main_table_and_json_out(tmp_path, capsys):
    hyp = _write(tmp_path / "hyp.txt", "the cat sat on the mat\nrunning dogs\n\n")
    ref = _write(tmp_path / "ref.txt", "the cat was on the mat\nrun dog\nanything\n")
    out = tmp_path / "res.json"
    assert cli.main(["--hyp", hyp, "--ref", ref, "--out", str(out), "--bootstrap", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# ROUGE convention: google rouge-score ")
    assert "averaged over 3 lines" in lines[0] and "(200 resamples)" in lines[0]
    assert lines[2].split()[:2] == ["rouge1", f"{(f1(5, 6, 6) + 100) / 3:.2f}"]
    saved = json.loads(out.read_text())
    assert saved["n_lines"] == 3
    assert saved["rouge2"]["f"] == pytest.approx((60.0 + 100.0 + 0.0) / 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyp.txt", "ref.txt", "res.json"]  # no temp left


def test_subprocess_json(tmp_path):
    hyps, refs = _random_corpus(30, seed=11)
    refs = [r if r.strip() else "x" for r in refs]
    hyp = _write(tmp_path / "hyp.txt", "\n".join(hyps) + "\n")
    ref = _write(tmp_path / "ref.txt", "\n".join(refs) + "\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--hyp", hyp, "--ref", ref, "--json", "--seed", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)  # stdout is only the JSON object
    expect = rouge.summarize(rouge.score_lines(hyps, refs), n_boot=1000, seed=5)
    for m in rouge.METRICS:
        assert got[m] == pytest.approx(expect[m], abs=1e-9)
    assert got["n_lines"] == 30 and "Porter stemmer" in got["convention"]


@pytest.mark.parametrize("case", ["missing", "empty", "mismatch", "bad_utf8_hyp", "bad_utf8_ref", "empty_ref"])
def test_errors_exit_2_with_clear_message(tmp_path, capsys, case):
    good = "one line\ntwo line\nthree line\n"
    hyp, ref = tmp_path / "hyp_file.txt", tmp_path / "ref_file.txt"
    _write(hyp, good)
    _write(ref, good)
    expect = []
    if case == "missing":
        hyp = tmp_path / "no_such_hyp.txt"
        expect = ["no_such_hyp.txt"]
    elif case == "empty":
        _write(ref, b"")
        expect = ["ref_file.txt", "empty"]
    elif case == "mismatch":
        _write(ref, "one line\ntwo line\n")
        expect = ["hyp_file.txt", "ref_file.txt", "3 lines", "2 lines"]
    elif case == "bad_utf8_hyp":
        _write(hyp, b"one line\n\xff\xfe bad\nthree\n")
        expect = ["hyp_file.txt", "line 2", "UTF-8"]
    elif case == "bad_utf8_ref":
        _write(ref, b"one\ntwo\n\xff\xfe bad\n")
        expect = ["ref_file.txt", "line 3", "UTF-8"]
    elif case == "empty_ref":
        _write(ref, "one line\n\nthree line\n")
        expect = ["ref_file.txt", "line 2", "empty"]
    assert cli.main(["--hyp", str(hyp), "--ref", str(ref)]) == 2  # returns, does not raise
    cap = capsys.readouterr()
    assert cap.out == ""
    for s in expect:
        assert s in cap.err, (s, cap.err)

