"""Gigaword from a pretrained encoder (BERT2RND, ``--arch transformer_warm``, ``train.sh minilm-warm``).

- the seq2seq model's encoder computes what the converted encoder computes (and so what Hugging Face's does:
  tests/test_convert_hf.py), on real Gigaword sources, before any training; embeddings are tied;
- the WordPiece route (``prepare.sh --bpe hf``): the UNK convention, ``##`` decoding, order restoration;
- prepare -> train.sh minilm-warm (plain and dotprod, 2 updates) -> evaluate.sh end to end on a slice of
  ../shared/data/gigaword; the checkpoint is evaluated and resumed without the encoder's model.pt.

The converted MiniLM is the repository's ``pretrained/all-MiniLM-L6-v2`` (``make minilm``; ``make test``
depends on it).
"""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fairseq  # noqa: F401  (registers the plugin's fairseq parts on import of the package)
import fairseq_dpreg  # noqa: F401

REPO = Path(__file__).resolve().parents[1]

from fairseq_dpreg.gigaword import data as gd  # noqa: E402
from fairseq_dpreg.gigaword.hf_codec import HfCodec  # noqa: E402

EX = REPO / "examples" / "gigaword"
MINILM = REPO / "pretrained" / "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def minilm():
    for f in ("model.pt", "dict.txt", "tokenizer.json", "conversion.json"):
        if not (MINILM / f).is_file():
            pytest.fail(f"{MINILM / f} is missing: run `make minilm` (make test does)")
    return MINILM


@pytest.fixture(scope="module")
def codec(minilm):
    return HfCodec(minilm)


def build_warm(data_dir, *extra):
    from fairseq import options, tasks

    import fairseq_dpreg.glue  # noqa: F401  registers --arch transformer_warm (the package alone does not, when
    # it was imported before fairseq: fairseq_dpreg/__init__.py)

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data_dir), "--task", "translation", "--source-lang", "src", "--target-lang", "tgt",
        "--arch", "transformer_warm", "--dropout", "0", *extra])
    task = tasks.setup_task(args)
    return task.build_model(args).eval(), task, args


@pytest.fixture(scope="module")
def dict_dir(minilm, tmp_path_factory):
    d = tmp_path_factory.mktemp("dicts")
    for side in ("src", "tgt"):
        (d / f"dict.{side}.txt").write_bytes((minilm / "dict.txt").read_bytes())
    return d


def encoder_max_diff(model, ref, task, codec, lines):
    """Max |seq2seq encoder - converted hf_encoder| over the tokens of ``lines`` (left- vs right-padded)."""
    d = task.source_dictionary
    src = [d.encode_line(" ".join(codec.source_prefix + codec.encode(gd.clean_line(x))), add_if_not_exist=False)
           for x in lines]
    assert all((s != d.unk()).all() for s in src)
    n = max(len(s) for s in src)
    left = torch.full((len(src), n), d.pad())
    right = torch.full((len(src), n), d.pad())
    for i, s in enumerate(src):
        left[i, n - len(s):] = s  # the translation task left-pads sources
        right[i, :len(s)] = s
    with torch.no_grad():
        out = model.encoder(left, torch.tensor([len(s) for s in src]))["encoder_out"][0].transpose(0, 1)
        want = ref.encoder.sentence_encoder(right)["encoder_out"][0].transpose(0, 1)
    return max((out[i, n - len(s):] - want[i, :len(s)]).abs().max().item() for i, s in enumerate(src))


def test_encoder_is_the_converted_encoder(minilm, dict_dir, codec, shared_data):
    from fairseq_dpreg.pretrained.convert import load_converted_model

    lines = (shared_data / "gigaword" / "valid.src").read_text(encoding="utf-8").splitlines()
    lines = lines[:24] + [x for x in lines if "UNK" in gd.clean_line(x).split()][:8]
    model, task, args = build_warm(dict_dir, "--encoder-init", str(minilm))
    ref, _, _ = load_converted_model(str(minilm))
    assert encoder_max_diff(model, ref, task, codec, lines) <= 1e-5
    # one vocabulary: decoder input and output embeddings are the encoder's token embeddings
    assert model.decoder.embed_tokens.weight is model.encoder.embed_tokens.weight
    assert model.decoder.output_projection.weight is model.encoder.embed_tokens.weight
    assert len(model.decoder.layers) == 3 and args.encoder_init is None  # what checkpoints store
    # every encoder layer norm has the converted epsilon; the new decoder keeps fairseq's
    eps = {m.eps for m in model.encoder.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-12}
    assert {m.eps for m in model.decoder.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}


def test_encoder_init_errors(minilm, dict_dir, tmp_path):
    from fairseq_dpreg.pretrained.seq2seq import EncoderInitError

    with pytest.raises(EncoderInitError, match="no such folder"):
        build_warm(dict_dir, "--encoder-init", str(tmp_path / "nowhere"))
    with pytest.raises(EncoderInitError, match=r"layers\.0\.fc1\.weight has shape \(1536, 384\) in model\.pt"):
        build_warm(dict_dir, "--encoder-init", str(minilm), "--encoder-ffn-embed-dim", "512")
    with pytest.raises(EncoderInitError, match=r"--encoder-normalize-before: .* \(post-norm"):
        build_warm(dict_dir, "--encoder-init", str(minilm), "--encoder-normalize-before")


# ---------------------------------------------------------------------------------------------------
# the WordPiece route: UNK convention, decoding, order restoration


def test_unk_convention_on_the_wordpiece_route(codec):
    clean = gd.clean_line("Police in <unk> said UNK rose #.# pct")
    assert clean == "police in UNK said UNK rose #.# pct"
    toks = codec.encode(clean)
    assert toks.count(codec.unk) == 2 and all(t.isdigit() for t in toks)  # [UNK]'s id, never the word "unk"
    assert codec.decode(codec.encode("unk")) == "unk"  # the lowercase word is text
    assert gd.postprocess_hypothesis(codec.decode(toks)) == "police in UNK said UNK rose # . # pct"
    # fairseq's <unk> (whose row is [UNK]'s) and [UNK] itself come back as UNK; [CLS]/[SEP] are dropped
    hyp = codec.encode("shares") + ["<unk>", "101"] + codec.encode("tumbled") + [codec.unk, "102"]
    assert gd.postprocess_hypothesis(codec.decode(hyp)) == "shares UNK tumbled UNK"
    # ## continuations join the previous piece, not an UNK
    assert codec.decode(codec.encode("unbelievably cheerful")) == "unbelievably cheerful"
    cont = codec.encode("believably")[1:]  # pieces that all start with ##
    assert len(cont) >= 1 and codec.decode(cont) == "ievably"
    assert codec.decode([codec.unk] + cont) == "UNK ievably"


def test_order_restoration_on_the_wordpiece_route(codec):
    words = "police shares minister talks tokyo weather football election".split()
    sources = [" ".join(codec.source_prefix + codec.encode(f"{w} said")) for w in words]
    hyps = [" ".join(codec.encode(f"{w} headline")) for w in words]
    order = list(range(len(words)))
    random.Random(5).shuffle(order)
    gen = []
    for i in order:
        gen += [f"S-{i}\t{sources[i]}\n", f"H-{i}\t-0.5\t{hyps[i]}\n", f"D-{i}\t-0.5\t{hyps[i]}\n"]
    assert gd.collect(gen, codec, sources) == [f"{w} headline" for w in words]
    swapped = list(sources)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(gd.GenerateOutputError, match="is not input line"):
        gd.collect(gen, codec, swapped)


# ---------------------------------------------------------------------------------------------------
# end to end on a slice of the real data


def run_ok(cmd, **env):
    e = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), **env)
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=e, cwd=REPO)
    assert proc.returncode == 0, f"{cmd[1]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


SMALL = ["--decoder-layers", "1", "--decoder-ffn-embed-dim", "64", "--max-tokens", "400", "--max-update", "2",
         "--log-interval", "1", "--warmup-updates", "2", "--validate-interval-updates", "0",
         "--save-interval-updates", "0", "--max-valid-steps", "1", "--batch-size-valid", "4"]


def test_end_to_end_wordpiece_route(minilm, shared_data, tmp_path):
    giga = shared_data / "gigaword"
    raw = tmp_path / "release"
    raw.mkdir()
    for split, n in (("train", 120), ("valid", 20)):
        for side in ("src", "tgt"):
            lines = (giga / f"valid.{side}" if split == "valid" else giga / f"train.{side}").read_text(
                encoding="utf-8").splitlines()
            (raw / f"{split}.{side}").write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    valid_src = (giga / "valid.src").read_text(encoding="utf-8").splitlines()
    ev_src = valid_src[100:124] + [x for x in valid_src if "UNK" in gd.clean_line(x).split()][:3] + [""]
    (tmp_path / "eval.src").write_text("\n".join(ev_src) + "\n", encoding="utf-8")
    (tmp_path / "eval.tgt").write_text("\n".join(["a headline"] * len(ev_src)) + "\n", encoding="utf-8")

    # a copy of the encoder folder (links), so that the test can take model.pt away afterwards
    enc = tmp_path / "encoder"
    enc.mkdir()
    for f in ("model.pt", "dict.txt", "tokenizer.json", "conversion.json"):
        (enc / f).symlink_to(minilm / f)

    data_bin = tmp_path / "data-bin"
    run_ok(["bash", EX / "prepare.sh", raw, data_bin, "--bpe", "hf", "--hf-dir", enc])
    assert (data_bin / "dict.src.txt").read_bytes() == (minilm / "dict.txt").read_bytes()
    manifest = json.loads((data_bin / "prepare.json").read_text())
    assert manifest["codec"] == "hf"
    pieces = (data_bin / "pieces" / "train.src").read_text().splitlines()
    assert all(x.split()[0] == "101" for x in pieces)  # [CLS] starts every source
    n_unk = sum(x.split().count("UNK") for x in (data_bin / "clean" / "train.src").read_text().splitlines())
    assert n_unk > 0 and sum(x.split().count("100") for x in pieces) == n_unk

    ck = {}
    for algo in ("plain", "dotprod"):
        ck[algo] = tmp_path / f"ck-{algo}"
        run_ok(["bash", EX / "train.sh", "minilm-warm", algo, data_bin, ck[algo], *SMALL], ENCODER_DIR=str(enc))
        log = (ck[algo] / "train.log").read_text()
        records = [json.loads(x.split("| train_inner | ")[1]) for x in log.splitlines() if "| train_inner | " in x]
        assert len(records) == 2, log[-2000:]
        assert "encoder initialised from" in log
        if algo == "dotprod":
            assert all("dpreg_cos" in r and float(r["dpreg_skipped"]) == 0 for r in records)
        model_cfg = torch.load(ck[algo] / "checkpoint_last.pt", map_location="cpu", weights_only=True)["cfg"]["model"]
        assert getattr(model_cfg, "encoder_init", "absent") is None  # the checkpoint never points at the folder

    # the trained checkpoint needs no encoder weights: generate and resume without model.pt
    (enc / "model.pt").unlink()
    ev = run_ok(["bash", EX / "evaluate.sh", data_bin, ck["plain"] / "checkpoint_last.pt", tmp_path / "eval.src",
                 tmp_path / "eval.tgt", "--split", "evalx", "--max-len-b", "6", "--min-len", "3",
                 # sampling, flattened: a 2-update model then writes a different headline for each input
                 "--sampling", "--sampling-topk", "50", "--temperature", "3", "--beam", "1", "--seed", "7"])
    assert len(ev_src) == 28 and "1 empty" in ev.stdout
    hyps = (ck["plain"] / "hyps.evalx.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(hyps) == len(ev_src) and len(set(hyps)) > len(ev_src) // 2
    assert all(h == h.lower() or "UNK" in h for h in hyps)
    gen = (ck["plain"] / "generate.evalx.txt").read_text(encoding="utf-8").splitlines()
    src_by_id = {int(x.split("\t")[0][2:]): x.split("\t")[1].split() for x in gen if x.startswith("S-")}
    assert sorted(src_by_id) == list(range(len(ev_src)))
    assert all(src_by_id[i][0] == "101" for i in src_by_id)
    # hypothesis i belongs to source i: the kept fairseq-generate output, decoded independently
    hyp_by_id = {int(x.split("\t")[0][2:]): x.split("\t")[2].split() for x in gen if x.startswith("H-")}
    codec = HfCodec(minilm)
    assert hyps == [gd.postprocess_hypothesis(codec.decode(hyp_by_id[i])) for i in range(len(ev_src))]
    assert src_by_id[len(ev_src) - 2].count("100") >= 1  # a source with UNK reaches the encoder as [UNK]
    rouge = json.loads((ck["plain"] / "rouge.evalx.json").read_text())
    assert rouge["n_lines"] == len(ev_src)

    res = run_ok(["bash", EX / "train.sh", "minilm-warm", "plain", data_bin, ck["plain"], *SMALL,
                  "--max-update", "3"], ENCODER_DIR=str(enc))
    log = (ck["plain"] / "train.log").read_text()
    assert "resuming from" in res.stderr and log.count("encoder initialised from") == 1
    assert '"num_updates": "3"' in log
