"""Gigaword pipeline: cleaning and the UNK convention, input validation, order restoration after
fairseq-generate, the demo corpus, train.sh's switch, and prepare -> train -> evaluate end to end on a slice
of ../shared/data/gigaword."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import make_demo_corpus  # noqa: E402
from fairseq_dpreg.gigaword import data as gd  # noqa: E402

EX = REPO / "examples" / "gigaword"
PY = sys.executable


def script_env():
    return dict(os.environ, PYTHON=PY, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def write(path, lines_or_bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(lines_or_bytes, bytes):
        path.write_bytes(lines_or_bytes)
    else:
        path.write_text("".join(x + "\n" for x in lines_or_bytes), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------
# cleaning and the UNK convention


def test_clean_line_keeps_release_conventions():
    assert gd.clean_line("  Shares of ACME rose 12.5 pct <unk> UNK  ") == "shares of acme rose ##.# pct UNK UNK"
    assert gd.clean_line("a <UNK> b") == "a UNK b"


@pytest.fixture(scope="module")
def spm_codec(tmp_path_factory):
    d = tmp_path_factory.mktemp("spm")
    rng = random.Random(0)
    words = "the police said on monday that shares rose in tokyo after talks with UNK officials".split()
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(300)]
    text = write(d / "train.txt", lines)
    gd.train_spm([text], d / "spm", vocab_size=60, model_type="unigram", threads=1)
    return gd.SpmCodec(d / "spm.model")


def test_unk_is_one_reserved_piece_and_round_trips(spm_codec):
    clean = gd.clean_line("police in <unk> said UNK rose")
    assert clean == "police in UNK said UNK rose"
    pieces = spm_codec.encode(clean)
    assert pieces.count("UNK") == 2  # a user-defined symbol: never split
    assert not any("UNK" in p and p != "UNK" for p in pieces)
    assert gd.postprocess_hypothesis(spm_codec.decode(pieces)) == clean


def test_fairseq_unk_in_hypothesis_becomes_UNK(spm_codec):
    pieces = spm_codec.encode("police said") + ["<unk>"] + spm_codec.encode("rose")
    assert gd.postprocess_hypothesis(spm_codec.decode(pieces)) == "police said UNK rose"
    assert gd.postprocess_hypothesis("Police <unk> SAID \u2047") == "police UNK said UNK"


def test_gpt2_codec_round_trip(tmp_path):
    """The BART route: byte-level GPT-2 BPE (a tiny merge-free vocabulary stands in for GPT-2's)."""
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    enc = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    (tmp_path / "encoder.json").write_text(json.dumps(enc))
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")
    codec = gd.Gpt2Codec(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    clean = gd.clean_line("Police in <unk> said 25 rose")
    toks = codec.encode(clean)
    assert all(t.isdigit() for t in toks)
    assert gd.postprocess_hypothesis(codec.decode(toks)) == clean
    assert gd.postprocess_hypothesis(codec.decode(codec.encode("a b") + ["<unk>"] + codec.encode(" c"))) == "a b UNK c"


# ---------------------------------------------------------------------------------------------------
# order restoration after fairseq-generate


def fake_generate_output(sources, hyps, order):
    lines = ["2024-01-01 | INFO | fairseq_cli.generate | loading model"]
    for i in order:
        lines += [f"S-{i}\t{sources[i]}", f"T-{i}\tx", f"H-{i}\t-0.5\t{hyps[i]}", f"D-{i}\t-0.5\t{hyps[i]}",
                  f"P-{i}\t-0.1 -0.2"]
    lines.append("Generate test with beam=5: BLEU4 = 1.0")
    return [x + "\n" for x in lines]


SOURCES = [f"\u2581src{i} \u2581w{i}" for i in range(7)]
HYPS = [f"\u2581hyp{i} \u2581out{i}" for i in range(7)]


def test_restore_order_from_shuffled_ids(spm_codec):
    order = list(range(7))
    random.Random(3).shuffle(order)
    assert order != sorted(order)
    out = gd.collect(fake_generate_output(SOURCES, HYPS, order), spm_codec, SOURCES)
    assert out == [f"hyp{i} out{i}" for i in range(7)]


def test_missing_id_is_an_error(spm_codec):
    order = [0, 1, 2, 4, 5, 6]
    with pytest.raises(gd.GenerateOutputError, match=r"1 of 7 inputs have no hypothesis \(ids 3\)"):
        gd.collect(fake_generate_output(SOURCES, HYPS, order), spm_codec, SOURCES)


def test_duplicate_or_foreign_id_is_an_error(spm_codec):
    lines = fake_generate_output(SOURCES, HYPS, range(7))
    with pytest.raises(gd.GenerateOutputError, match="appears twice"):
        gd.collect(lines + ["H-2\t-0.1\t\u2581again\n"], spm_codec, SOURCES)
    with pytest.raises(gd.GenerateOutputError, match="unexpected hypothesis ids 7"):
        gd.collect(lines + ["H-7\t-0.1\t\u2581extra\n"], spm_codec, SOURCES)


def test_source_check_catches_misaligned_ids(spm_codec):
    # ids present and unique, but S-<i> is not input line i: the hypotheses would be attached to wrong lines
    swapped = list(SOURCES)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    with pytest.raises(gd.GenerateOutputError, match="S-1 is not input line 2"):
        gd.collect(fake_generate_output(swapped, HYPS, range(7)), spm_codec, SOURCES)
    # fairseq prints <unk> for a token its dictionary lacks: that is not a mismatch
    unk = [s.replace("\u2581w3", "<unk>") for s in SOURCES]
    assert len(gd.collect(fake_generate_output(unk, HYPS, range(7)), spm_codec, SOURCES)) == 7


def test_empty_hypothesis_keeps_its_line(spm_codec):
    hyps = list(HYPS)
    hyps[4] = ""
    out = gd.collect(fake_generate_output(SOURCES, hyps, range(7)), spm_codec, SOURCES)
    assert len(out) == 7 and out[4] == "" and out[5] == "hyp5 out5"


def test_generate_input_truncates_and_fills_empty_lines(spm_codec):
    raw = ["police said " * 40, "", "   ", "shares rose"]
    toks, n_trunc, n_empty = gd.make_generate_input(spm_codec, raw, max_source_tokens=10)
    assert len(toks) == 4 and n_trunc == 1 and n_empty == 2
    unk = " ".join(spm_codec.encode("UNK"))
    assert len(toks[0].split()) == 10 and toks[1] == toks[2] == unk and toks[3]


# ---------------------------------------------------------------------------------------------------
# input validation: each error names the file and the line


GOOD = ["police said on monday", "shares rose in tokyo", "the talks ended"]
GOOD_T = ["police say", "shares rise", "talks end"]


def make_release(d, naming="src"):
    if naming == "src":
        names = {"train": ("train.src", "train.tgt"), "valid": ("valid.src", "valid.tgt")}
    else:
        names = {"train": ("train.article.txt", "train.title.txt"), "valid": ("valid.article.txt", "valid.title.txt")}
    for split, (s, t) in names.items():
        write(d / s, GOOD)
        write(d / t, GOOD_T)
    return names


@pytest.mark.parametrize("case", ["missing", "counts", "empty", "utf8"])
def test_prepare_input_errors(tmp_path, case):
    names = make_release(tmp_path, naming="rush")
    src = tmp_path / names["train"][0]
    tgt = tmp_path / names["train"][1]
    if case == "missing":
        tgt.unlink()
        expected = [str(tgt), "missing file"]
    elif case == "counts":
        write(tgt, GOOD_T[:2])
        expected = [str(src), str(tgt), "3 lines", "has 2", "line 3"]
    elif case == "empty":
        write(src, [GOOD[0], "  ", GOOD[2]])
        expected = [f"{src}:2:", "empty line"]
    else:
        src.write_bytes(b"police said\nshares \xff rose\nok\n")
        expected = [f"{src}:2:", "invalid UTF-8"]
    with pytest.raises(gd.DataError) as err:
        gd.stage(tmp_path, tmp_path / "out", vocab_size=50, log=lambda *a: None)
    for e in expected:
        assert e in str(err.value)


def test_missing_split_and_ambiguous_naming(tmp_path):
    write(tmp_path / "train.src", GOOD)
    write(tmp_path / "train.tgt", GOOD_T)
    with pytest.raises(gd.DataError, match="missing valid files"):
        gd.stage(tmp_path, tmp_path / "out", log=lambda *a: None)
    make_release(tmp_path, naming="rush")
    with pytest.raises(gd.DataError, match="more than one naming"):
        gd.stage(tmp_path, tmp_path / "out", log=lambda *a: None)


def test_prepare_sh_reports_the_error_and_leaves_no_output(tmp_path):
    names = make_release(tmp_path / "in")
    bad = tmp_path / "in" / names["valid"][0]
    bad.write_bytes(b"ok line\n\xc3\x28 bad\nthird\n")
    out = tmp_path / "bin"
    proc = subprocess.run(["bash", str(EX / "prepare.sh"), str(tmp_path / "in"), str(out)],
                          capture_output=True, text=True, env=script_env())
    assert proc.returncode != 0
    assert f"{bad}:2: invalid UTF-8" in proc.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bin")]


# ---------------------------------------------------------------------------------------------------
# demo corpus and train.sh


def test_demo_corpus_is_deterministic_and_in_release_format():
    a = make_demo_corpus.generate(200, 20, 20, seed=1)
    b = make_demo_corpus.generate(200, 20, 20, seed=1)
    assert a == b
    src, tgt = a["train"]
    assert len(src) == len(tgt) == 200
    all_src = set(src) | set(a["valid"][0]) | set(a["test"][0])
    assert len(all_src) == 240  # no source line in two splits
    for s, t in zip(src, tgt):
        assert gd.clean_line(s) == s and gd.clean_line(t) == t  # lowercase, # digits, UNK
        assert len(t.split()) < len(s.split())
    assert any("UNK" in s for s in src) and any("#" in s for s in src)


def dry_run(*args, **env):
    e = dict(script_env(), DRY_RUN="1", **env)
    return subprocess.run(["bash", str(EX / "train.sh"), *args], capture_output=True, text=True, env=e)


def test_train_sh_algorithm_switch(tmp_path):
    (tmp_path / "dict.src.txt").write_text("a 1\n")
    plain = dry_run("cpu-small", "plain", str(tmp_path), str(tmp_path / "ck"), "--lr", "1e-4")
    assert plain.returncode == 0, plain.stderr
    assert "--task translation " in plain.stdout and "--optimizer adam " in plain.stdout
    assert "--dpreg-" not in plain.stdout and "translation_dpreg" not in plain.stdout and "dpreg_adam" not in plain.stdout
    # the plugin folder is there for the pointer-generator architecture only
    assert "--user-dir" in plain.stdout and "--arch transformer_pointer_generator" in plain.stdout
    # extra flags come last, so they win over the recipe's
    assert plain.stdout.rindex("--lr 1e-4") > plain.stdout.index("--lr 1e-3")
    dot = dry_run("cpu-small", "dotprod", str(tmp_path), str(tmp_path / "ck"), DPREG_LAMBDA="0.3")
    assert "--task translation_dpreg" in dot.stdout and "--optimizer dpreg_adam" in dot.stdout
    assert "--dpreg-algorithm dotprod" in dot.stdout and "--dpreg-lambda 0.3" in dot.stdout
    assert "--user-dir" in dot.stdout and "--dpreg-alpha" not in dot.stdout
    rep = dry_run("transformer-base", "reptile", str(tmp_path), str(tmp_path / "ck"))
    assert "--dpreg-algorithm reptile" in rep.stdout and "--dpreg-alpha" in rep.stdout and "--amp" in rep.stdout
    assert "--fp16" not in rep.stdout  # fp16 weights cannot hold the perturbation (tests/test_mixed_precision.py)
    assert dry_run("cpu-small", "sgd", str(tmp_path), "x").returncode != 0
    assert dry_run("tiny", "plain", str(tmp_path), "x").returncode != 0
    nobart = dry_run("bart-large", "plain", str(tmp_path), "x", BART_PATH="")
    assert nobart.returncode != 0 and "BART_PATH" in nobart.stderr
    (tmp_path / "model.pt").write_bytes(b"")
    bart = dry_run("bart-large", "fomaml", str(tmp_path), "x", BART_PATH=str(tmp_path / "model.pt"))
    assert bart.returncode == 0 and "--arch bart_large" in bart.stdout and "--reset-optimizer" in bart.stdout


def test_evaluate_sh_refuses_its_own_decoding_flags(tmp_path):
    proc = subprocess.run(["bash", str(EX / "evaluate.sh"), "d", "c", "s", "r", "--post-process", "sentencepiece"],
                          capture_output=True, text=True, env=script_env())
    assert proc.returncode != 0 and "--post-process: leave decoding to this script" in proc.stderr


# ---------------------------------------------------------------------------------------------------
# end to end on a slice of the real data


TINY = ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
        "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
        "--decoder-attention-heads", "2", "--max-source-positions", "40", "--max-target-positions", "64",
        "--max-tokens", "1024", "--max-update", "4", "--log-interval", "1", "--warmup-updates", "2",
        "--validate-interval-updates", "0", "--save-interval-updates", "0", "--max-valid-steps", "1"]


def run_ok(cmd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=script_env(), cwd=REPO)
    assert proc.returncode == 0, f"{cmd[1]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_end_to_end_on_shared_gigaword(shared_data, tmp_path):
    giga = shared_data / "gigaword"
    lines = {f"{s}.{side}": (giga / f"{s}.{side}").read_text(encoding="utf-8").splitlines()
             for s in ("train", "valid") for side in ("src", "tgt")}
    raw = tmp_path / "release"  # the Rush file names, to exercise that naming
    write(raw / "train.article.txt", lines["train.src"][:300])
    write(raw / "train.title.txt", lines["train.tgt"][:300])
    write(raw / "valid.article.txt", lines["valid.src"][:50])
    write(raw / "valid.title.txt", lines["valid.tgt"][:50])
    # evaluation input: the 50 valid lines, the 5 longest valid sources (longer than the model's 40 positions
    # once encoded) and an empty line; fairseq-generate on its own would drop or refuse those
    longest = sorted(range(len(lines["valid.src"])), key=lambda i: -len(lines["valid.src"][i].split()))[:5]
    ev_src = lines["valid.src"][:50] + [lines["valid.src"][i] for i in longest] + [""]
    ev_ref = lines["valid.tgt"][:50] + [lines["valid.tgt"][i] for i in longest] + ["empty source"]
    write(tmp_path / "eval.src", ev_src)
    write(tmp_path / "eval.tgt", ev_ref)

    data_bin = tmp_path / "data-bin"
    run_ok(["bash", EX / "prepare.sh", raw, data_bin, "--vocab-size", "500"])
    for f in ("dict.src.txt", "spm.model", "prepare.json", "train.src-tgt.src.bin", "raw/valid.tgt"):
        assert (data_bin / f).exists(), f
    assert (data_bin / "raw" / "valid.tgt").read_text().splitlines() == lines["valid.tgt"][:50]

    ck = tmp_path / "ck"
    run_ok(["bash", EX / "train.sh", "cpu-small", "plain", data_bin, ck, *TINY])
    assert (ck / "checkpoint_best.pt").is_file()
    # the same recipe under the regularizer (pointer-generator model, dotprod passes) trains and logs its metrics
    ck_dot = tmp_path / "ck-dotprod"
    run_ok(["bash", EX / "train.sh", "cpu-small", "dotprod", data_bin, ck_dot, *TINY])
    records = [json.loads(x.split("| train_inner | ")[1]) for x in (ck_dot / "train.log").read_text().splitlines()
               if "| train_inner | " in x]
    assert len(records) == 4 and all("dpreg_cos" in r and float(r["dpreg_skipped"]) == 0 for r in records)

    ev = run_ok(["bash", EX / "evaluate.sh", data_bin, ck / "checkpoint_best.pt", tmp_path / "eval.src",
                 tmp_path / "eval.tgt", "--split", "evalx", "--max-len-b", "6",
                 # sampling: an all but untrained model then still writes a different headline for each
                 # input, so a hypothesis attached to the wrong line would show below
                 "--sampling", "--sampling-topk", "50", "--beam", "1", "--seed", "7"])
    codec = gd.load_codec(data_bin)
    expected_src = [codec.encode(gd.clean_line(s) or "UNK") for s in ev_src]
    n_long = sum(len(x) > 39 for x in expected_src)
    assert n_long >= 5 and f"{n_long} truncated, 1 empty" in ev.stdout
    hyps = (ck / "hyps.evalx.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(hyps) == len(ev_src) == 56 and len(set(hyps)) > 40
    rouge = json.loads((ck / "rouge.evalx.json").read_text())
    assert rouge["n_lines"] == 56 and set(rouge) >= {"rouge1", "rouge2", "rougeL", "convention"}
    assert 0.0 <= rouge["rouge1"]["ci_low"] <= rouge["rouge1"]["f"] <= rouge["rouge1"]["ci_high"] <= 100.0

    # hypothesis i belongs to source i: the kept fairseq-generate output, read independently
    gen = (ck / "generate.evalx.txt").read_text(encoding="utf-8").splitlines()
    src_by_id = {int(x.split("\t")[0][2:]): x.split("\t")[1].split() for x in gen if x.startswith("S-")}
    hyp_by_id = {int(x.split("\t")[0][2:]): x.split("\t")[2].split() if x.count("\t") >= 2 else []
                 for x in gen if x.startswith("H-")}
    assert sorted(src_by_id) == sorted(hyp_by_id) == list(range(56))
    for i in range(56):
        exp, got = expected_src[i][:39], src_by_id[i]
        assert len(got) == len(exp) and all(g in (e, "<unk>") for g, e in zip(got, exp)), i
        assert hyps[i] == gd.postprocess_hypothesis(codec.decode(hyp_by_id[i])), i
