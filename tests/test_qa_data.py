"""Extractive QA data: readers, offset-preserving tokenization, sliding windows, bad input, Quasar-T."""

import importlib.util
import json
from pathlib import Path

import pytest

from fairseq_dpreg.qa.data import (
    QADataError,
    QAExample,
    Answer,
    make_synthetic_squad2,
    quasar_to_mrqa,
    read_mrqa,
    read_qa_file,
    read_squad2,
)
from fairseq_dpreg.qa.tokenization import (
    BOS,
    EOS,
    GPT2BPETokenizer,
    SentencePieceTokenizer,
    char_span_to_token_span,
    featurize,
    split_punct,
    token_span_to_char_span,
    window_starts,
)

REPO = Path(__file__).resolve().parents[1]

# contexts with non-ASCII letters, CJK, runs of spaces, newlines and leading/trailing blanks
TRICKY = [
    ("  The café in Zürich  opened in 1987.\nA naïve plan:  東京大学 and 北京 both.\n\n", [
        "café", "Zürich", "opened in 1987", "naïve plan", "東京大学", "北京", "Zürich  opened", "1987.\nA naïve"]),
    ("Ünïcödé   wörds\tand\ttabs; Ærøskøbing is small. Москва — большой город.", [
        "Ünïcödé", "wörds", "Ærøskøbing", "Москва", "большой город", "Ünïcödé   wörds\tand"]),
]


def _spm_corpus():
    doc = make_synthetic_squad2(30, seed=3)
    lines = [p["context"] for p in doc["data"][0]["paragraphs"]]
    lines += [q["question"] for p in doc["data"][0]["paragraphs"] for q in p["qas"]]
    lines += [c for c, _ in TRICKY] * 3
    return [split_punct(x)[0] for line in lines for x in line.split("\n") if x.strip()]


@pytest.fixture(scope="module")
def spm_tok(tmp_path_factory):
    import sentencepiece as spm

    prefix = str(tmp_path_factory.mktemp("spm") / "spm")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_spm_corpus()), model_prefix=prefix, vocab_size=180,
                                   hard_vocab_limit=False, character_coverage=0.98, minloglevel=2)
    return SentencePieceTokenizer(prefix + ".model")


@pytest.fixture(scope="module")
def gpt2_tok(tmp_path_factory):
    """A tiny byte-level BPE in GPT-2's file formats (the real encoder.json/vocab.bpe are not offline)."""
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    d = tmp_path_factory.mktemp("gpt2")
    byte_enc = bytes_to_unicode()
    byte_chars = list(byte_enc.values())
    merges = []
    for word in [" the", " Zürich", " naïve", "東京", " wörds", "ch"]:
        chars = [byte_enc[b] for b in word.encode("utf-8")]
        for c in chars[1:]:  # merge left to right: ((a b) c) ...
            merges.append((chars[0], c))
            chars[0] += c
    merges = list(dict.fromkeys(merges))
    vocab = byte_chars + ["".join(m) for m in merges]
    (d / "encoder.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (d / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return GPT2BPETokenizer(str(d / "encoder.json"), str(d / "vocab.bpe"))


def _find_all(text, sub):
    i = text.find(sub)
    while i >= 0:
        yield i
        i = text.find(sub, i + 1)


def _check_offsets(text, offsets):
    prev = 0
    for s, e in offsets:
        assert 0 <= s <= e <= len(text)
        assert s >= prev or e == s, "token spans must move forward"
        if e > s:
            assert not text[s].isspace() and not text[e - 1].isspace(), (s, e, text[s:e])
            prev = s
    # every non-blank character is covered by some token
    covered = set()
    for s, e in offsets:
        covered.update(range(s, e))
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and i not in covered]
    assert not missing, f"characters not covered by any token: {[text[i] for i in missing]}"


@pytest.mark.parametrize("which", ["spm", "gpt2"])
def test_offsets_round_trip_exact_text(which, spm_tok, gpt2_tok):
    tok = spm_tok if which == "spm" else gpt2_tok
    for context, answers in TRICKY:
        symbols, offsets = tok.encode(context)
        assert len(symbols) == len(offsets) > 0
        _check_offsets(context, offsets)
        for answer in answers:
            for start in _find_all(context, answer):
                span = char_span_to_token_span(offsets, start, start + len(answer))
                assert span is not None
                s, e = token_span_to_char_span(offsets, *span)
                assert context[s:e] == answer, (which, answer, context[s:e])


def test_gpt2_symbols_match_fairseq_encoder(gpt2_tok):
    for context, _ in TRICKY + [("the Zürich naïve 東 and  the", [])]:
        symbols, offsets = gpt2_tok.encode(context)
        assert symbols == [str(i) for i in gpt2_tok.bpe.encode(context)]
    symbols, offsets = gpt2_tok.encode("in Zürich")
    assert [("in Zürich")[s:e] for s, e in offsets] == ["i", "n", "Zürich"]  # merged 'ĠZürich' minus the space


def test_spm_unknown_and_whitespace_tokens(spm_tok):
    text = "x  ☃☃  y\n\nz"
    symbols, offsets = spm_tok.encode(text)
    _check_offsets(text, offsets)
    assert "<unk>" in symbols
    assert all(text[s:e].strip() == text[s:e] for s, e in offsets)


def test_split_punct_keeps_a_map_to_the_original():
    text = "Paris.  (Zürich), naïve—東京: 3.5%\n"
    split, index = split_punct(text)
    assert split == "Paris .  ( Zürich ) , naïve — 東京 : 3 . 5 %\n"
    assert len(index) == len(split)
    for ch, i in zip(split, index):
        assert ch == text[i] or (ch == " " and text[i] != " ")
    assert index == sorted(index)


def test_spm_pieces_stop_at_punctuation(spm_tok, tmp_path):
    import sentencepiece as spm

    # a model trained on unsplit text learns pieces such as "Paris." or "1987."; applied with
    # punct_split they cannot be used, so an answer never ends inside a piece at a full stop
    corpus = ["We met in Paris. Then Paris, then 1987. Again 1987.", "Paris. 1987. Zürich's café."] * 200
    prefix = str(tmp_path / "raw")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_prefix=prefix, vocab_size=40,
                                   hard_vocab_limit=False, minloglevel=2)
    raw_tok = SentencePieceTokenizer(prefix + ".model", punct_split=False)
    text = "opened in 1987.\nParis. Zürich's café, naïve."
    mixed = [text[s:e] for s, e in raw_tok.encode(text)[1] if not text[s:e].isalnum() and e - s > 1]
    assert mixed, "the unsplit model should have pieces mixing letters/digits and punctuation"
    for tok in (spm_tok, SentencePieceTokenizer(prefix + ".model")):
        for s, e in tok.encode(text)[1]:
            piece = text[s:e]
            assert len(piece) <= 1 or piece.isalnum(), piece


def test_char_token_span_mapping():
    offsets = [(0, 3), (4, 4), (4, 9), (9, 10), (11, 15)]
    assert char_span_to_token_span(offsets, 4, 9) == (2, 2)
    assert char_span_to_token_span(offsets, 5, 10) == (2, 3)  # partial start: covering span
    assert char_span_to_token_span(offsets, 3, 4) is None  # whitespace only
    assert token_span_to_char_span(offsets, 0, 4) == (0, 15)


def test_window_starts_cover_everything():
    for n in (0, 1, 5, 37, 100):
        for max_len in (1, 7, 16, 40):
            for stride in sorted({1, max(1, max_len // 2), max_len}):
                windows = window_starts(n, max_len, stride)
                covered = set()
                for s, e in windows:
                    assert 0 <= s <= e <= n and e - s <= max_len
                    covered.update(range(s, e))
                assert covered == set(range(n))
                assert windows[-1][1] == n
                assert all(b[0] - a[0] == stride for a, b in zip(windows, windows[1:]))
    with pytest.raises(ValueError):
        window_starts(10, 4, 5)


def test_windows_over_long_context(spm_tok):
    sentences = [f"Sentence {i} mentions {city}." for i, city in
                 enumerate(["Zürich", "Oslo", "Lima", "東京", "Kraków", "Perth", "Cork"] * 6)]
    context = "  ".join(sentences)
    ctx_symbols, ctx_offsets = spm_tok.encode(context)
    examples = []
    for k, i in enumerate([0, 9, 20, 41]):
        answer = sentences[i]
        start = context.index(answer)
        examples.append(QAExample(f"q{k}", "Which sentence?", context, 0, [Answer(answer, start, start + len(answer))]))
    examples.append(QAExample("qna", "Which sentence?", context, 0, [], True))
    max_seq_len, stride = 40, 11
    features = featurize(examples, spm_tok, max_seq_len=max_seq_len, doc_stride=stride, max_query_len=8)
    for ex in examples:
        feats = [f for f in features if f.qid == ex.qid]
        assert len(feats) > 2
        covered = set()
        for f in feats:
            assert len(f.symbols) <= max_seq_len
            assert f.symbols[0] == BOS and f.symbols[-1] == EOS
            assert f.symbols[f.ctx_start - 2:f.ctx_start] == [EOS, EOS]
            first = ctx_offsets.index(f.ctx_offsets[0])
            assert f.symbols[f.ctx_start:f.ctx_end] == ctx_symbols[first:first + len(f.ctx_offsets)]
            covered.update(range(first, first + len(f.ctx_offsets)))
            if ex.is_impossible:
                assert (f.start, f.end) == (0, 0)
                continue
            a = ex.answers[0]
            inside = f.ctx_offsets[0][0] <= a.start and a.end <= max(o[1] for o in f.ctx_offsets)
            if f.start:
                assert f.ctx_start <= f.start <= f.end < f.ctx_end
                s, e = token_span_to_char_span(f.ctx_offsets, f.start - f.ctx_start, f.end - f.ctx_start)
                assert context[s:e] == a.text
            else:
                assert f.end == 0 and not inside, "window holding the whole answer must target it"
        assert covered == set(range(len(ctx_symbols))), "every context token must be in some window"
        if not ex.is_impossible:
            assert any(f.start for f in feats)


def test_featurize_rejects_stride_that_skips_tokens(spm_tok):
    ex = QAExample("q", "Where?", "Alice lives in Oslo.", 0, [Answer("Oslo", 15, 19)])
    with pytest.raises(ValueError, match="doc_stride"):
        featurize([ex], spm_tok, max_seq_len=20, doc_stride=20, max_query_len=4)


def test_newsqa_sample(shared_data, spm_tok):
    path = shared_data / "newsqa" / "NewsQA_sample.jsonl"
    examples = read_qa_file(str(path))
    # the data README says "header line, then 2 contexts / 10 questions"; the file has no header line and
    # 3 contexts / 17 questions: count from the file, and check that no context line is taken for a header
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raw = [rec for rec in lines if "context" in rec]
    assert len(raw) >= 2
    assert len({ex.context_id for ex in examples}) == len(raw)
    n_questions = sum(len(rec["qas"]) for rec in raw)
    assert n_questions >= 10 and len(examples) == n_questions and len({ex.qid for ex in examples}) == n_questions
    by_qid = {qa["qid"]: (rec["context"], qa) for rec in raw for qa in rec["qas"]}
    for ex in examples:
        context, qa = by_qid[ex.qid]
        assert ex.context == context and ex.question == qa["question"] and not ex.is_impossible
        assert ex.answers
        for a in ex.answers:
            assert context[a.start:a.end] == a.text
        detected = qa["detected_answers"][0]
        s, e = detected["char_spans"][0]
        assert (ex.answers[0].start, ex.answers[0].end, ex.answers[0].text) == (s, e + 1, detected["text"])
    features = featurize(examples, spm_tok, max_seq_len=128, doc_stride=48, max_query_len=24)
    for ex in examples:
        hits = [f for f in features if f.qid == ex.qid and f.start]
        assert hits, ex.qid
        f = hits[0]
        s, e = token_span_to_char_span(f.ctx_offsets, f.start - f.ctx_start, f.end - f.ctx_start)
        assert ex.context[s:e] == ex.answers[0].text


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_squad_reader_and_bad_input(tmp_path):
    doc = make_synthetic_squad2(5, seed=7)
    good = _write(tmp_path / "good.json", json.dumps(doc, ensure_ascii=False, indent=1))
    examples = read_squad2(good)
    assert sum(ex.is_impossible for ex in examples) >= 1
    for ex in examples:
        assert all(ex.context[a.start:a.end] == a.text for a in ex.answers)
        assert ex.is_impossible == (not ex.answers)

    text = json.dumps(doc, indent=1).splitlines()
    text[5] = text[5] + " oops,"
    bad_json = _write(tmp_path / "bad.json", "\n".join(text))
    with pytest.raises(QADataError, match=r"bad\.json: line 6 .*malformed JSON"):
        read_squad2(bad_json)

    qa = doc["data"][0]["paragraphs"][1]["qas"][0]
    qa["answers"][0]["answer_start"] += 1
    shifted = _write(tmp_path / "shifted.json", json.dumps(doc))
    with pytest.raises(QADataError, match=r"shifted\.json: question id '" + qa["id"] + "'.*do not match"):
        read_squad2(shifted)
    n_skipped = read_squad2(shifted, on_bad_answer="skip")
    assert len(n_skipped) == len(examples) - 1

    qa["answers"][0]["answer_start"] = 10 ** 6
    with pytest.raises(QADataError, match="outside the context"):
        read_squad2(_write(tmp_path / "far.json", json.dumps(doc)))

    doc2 = make_synthetic_squad2(2, seed=7)
    doc2["data"][0]["paragraphs"][1]["qas"][0]["id"] = doc2["data"][0]["paragraphs"][0]["qas"][0]["id"]
    with pytest.raises(QADataError, match="duplicate question id"):
        read_squad2(_write(tmp_path / "dup.json", json.dumps(doc2)))


def test_mrqa_reader_bad_input(tmp_path):
    ctx = "Paris is the capital of France. PARIS again."
    lines = [{"header": {"dataset": "toy"}},
             {"context": ctx, "qas": [
                 {"qid": "a", "question": "Capital?", "answers": ["Paris"],
                  "detected_answers": [{"text": "Paris", "char_spans": [[0, 4], [32, 36]]}]},
                 {"qid": "b", "question": "Nothing?", "answers": [], "detected_answers": [],
                  "is_impossible": True}]}]
    good = _write(tmp_path / "good.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    examples = read_mrqa(good)
    assert [a.text for a in examples[0].answers] == ["Paris", "PARIS"]
    assert examples[1].is_impossible and not examples[1].answers

    bad = _write(tmp_path / "bad.jsonl", json.dumps(lines[0]) + "\n" + json.dumps(lines[1]) + "\n{not json\n")
    with pytest.raises(QADataError, match=r"bad\.jsonl: line 3 .*malformed JSON"):
        read_mrqa(bad)

    lines[1]["qas"][0]["detected_answers"][0]["char_spans"] = [[1, 5]]
    shifted = _write(tmp_path / "shifted.jsonl", "\n".join(json.dumps(x) for x in lines))
    with pytest.raises(QADataError, match=r"shifted\.jsonl: question id 'a': line 2: .*do not match"):
        read_mrqa(shifted)


def test_quasar_to_mrqa(tmp_path):
    questions = [
        {"uid": "s1", "question": "Which city hosts the Louvre?", "answer": "paris", "tags": []},
        {"uid": "s2", "question": "Never found?", "answer": "zebra"},
    ]
    contexts = [
        {"uid": "s1", "contexts": [[1.5, "The Louvre is in Paris, France."], [0.9, "Comparison of paris and Paris."],
                                   [0.1, "Parisian food is not an answer."]]},
        {"uid": "s2", "contexts": [[0.3, "No striped animals here."]]},
    ]
    qpath = _write(tmp_path / "q.jsonl", "\n".join(json.dumps(x) for x in questions) + "\n")
    cpath = _write(tmp_path / "c.jsonl", "\n".join(json.dumps(x) for x in contexts) + "\n")
    header, records, counts = quasar_to_mrqa(qpath, cpath, split="dev")
    assert header["header"]["split"] == "dev"
    assert counts["questions_kept"] == 1 and counts["contexts_kept"] == 2
    assert [r["context"] for r in records] == [c[1] for c in contexts[0]["contexts"][:2]]
    out = _write(tmp_path / "quasar.jsonl", "\n".join(json.dumps(x) for x in [header] + records) + "\n")
    examples = read_mrqa(out)
    assert [ex.qid for ex in examples] == ["s1", "s1"]
    assert [[a.text for a in ex.answers] for ex in examples] == [["Paris"], ["paris", "Paris"]]

    _, records_cs, _ = quasar_to_mrqa(qpath, cpath, case_sensitive=True)
    assert len(records_cs) == 1 and records_cs[0]["qas"][0]["detected_answers"][0]["char_spans"] == [[14, 18]]

    bad = _write(tmp_path / "bad.jsonl", json.dumps(questions[0]) + "\n" + '{"uid": "s2", "question": \n')
    with pytest.raises(QADataError, match=r"bad\.jsonl: line 2 .*malformed JSON"):
        quasar_to_mrqa(bad, cpath)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quasar_cli_and_prepare_cli_bad_input(tmp_path, capsys):
    qpath = _write(tmp_path / "q.jsonl", json.dumps({"uid": "u1", "question": "Q?", "answer": "Oslo"}) + "\n")
    cpath = _write(tmp_path / "c.jsonl", json.dumps({"uid": "u1", "contexts": [[1, "Oslo is cold."]]}) + "\n")
    out = tmp_path / "out.jsonl"
    assert _load_script("quasar_to_mrqa").main([qpath, cpath, str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["header"]["dataset"] == "QuasarT" and len(lines) == 2

    doc = make_synthetic_squad2(3, seed=5)
    doc["data"][0]["paragraphs"][2]["qas"][1]["answers"][0]["text"] += "x"
    bad = _write(tmp_path / "train.json", json.dumps(doc))
    prepare = _load_script("qa_prepare")
    with pytest.raises(QADataError, match=r"train\.json: question id 'synthetic-2-1'"):
        prepare.main(["--train", bad, "--destdir", str(tmp_path / "bin"), "--spm-vocab-size", "60", "--quiet"])


def test_prepare_gpt2_route_with_checkpoint_dict(tmp_path, gpt2_tok):
    """--tokenizer gpt2 --dict: symbols are BPE ids looked up in the checkpoint's dict.txt (RoBERTa layout)."""
    import numpy as np
    from fairseq.data import Dictionary, indexed_dataset

    n_ids = len(gpt2_tok.bpe.encoder)
    (tmp_path / "dict.txt").write_text("".join(f"{i} {1000 - i % 7}\n" for i in range(n_ids)), encoding="utf-8")
    doc = make_synthetic_squad2(4, seed=9)
    data = _write(tmp_path / "train.json", json.dumps(doc, ensure_ascii=False))
    out = tmp_path / "bin"
    rc = _load_script("qa_prepare").main([
        "--train", data, "--destdir", str(out), "--tokenizer", "gpt2", "--gpt2-encoder-json", gpt2_tok.encoder_json,
        "--gpt2-vocab-bpe", gpt2_tok.vocab_bpe, "--dict", str(tmp_path / "dict.txt"), "--max-seq-len", "40",
        "--doc-stride", "8", "--max-query-len", "12", "--quiet",
    ])
    assert rc == 0
    settings = json.loads((out / "qa_prepare.json").read_text(encoding="utf-8"))
    assert settings["splits"]["train"]["unk_rate"] == 0.0
    dictionary = Dictionary.load(str(out / "dict.txt"))
    tokens = indexed_dataset.MMapIndexedDataset(str(out / "train"))
    spans = np.load(out / "train.spans.npy")
    first_q = doc["data"][0]["paragraphs"][0]["qas"][0]
    ids = tokens[0].tolist()
    assert ids[0] == dictionary.bos() and ids[-1] == dictionary.eos()
    q_ids = [str(i) for i in gpt2_tok.bpe.encode(first_q["question"])][:12]
    assert [dictionary[i] for i in ids[1:1 + len(q_ids)]] == q_ids
    windows = [json.loads(x) for x in (out / "train.windows.jsonl").read_text(encoding="utf-8").splitlines()]
    contexts = [json.loads(x) for x in (out / "train.contexts.jsonl").read_text(encoding="utf-8").splitlines()]
    for w, (s, e, cs, ce) in enumerate(spans):
        if s:
            meta = windows[w]
            offsets = contexts[meta["ctx"]]["offsets"][meta["tok_start"]:meta["tok_start"] + meta["n"]]
            a, b = token_span_to_char_span(offsets, s - cs, e - cs)
            answer = contexts[meta["ctx"]]["text"][a:b]
            golds = [q["answers"][0]["text"] for p in doc["data"][0]["paragraphs"] for q in p["qas"]
                     if q["id"] == meta["qid"]]
            assert golds == [answer]
