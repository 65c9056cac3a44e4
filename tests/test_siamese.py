"""--sentence-pair-encoding siamese: the pair is split as the pipelines build it, and each half is the
checkpoint's own sentence embedding (all-MiniLM-L6-v2 through Hugging Face transformers: mean pooling over
the attention mask, then L2 normalisation, as sentence-transformers computes it)."""
import pytest
import torch
import transformers

from test_convert_hf import TOL, minilm_dir, real_sentences

from fairseq_dpreg.pretrained.convert import convert, load_converted_model
from fairseq_dpreg.pretrained.model import split_pair

PAD, EOS = 1, 2


def test_split_pair_on_either_padding_side():
    right = torch.tensor([[0, 7, 8, 2, 2, 9, 2], [0, 7, 2, 2, 9, 5, 2], [0, 6, 2, 2, 5, 2, 1]])
    left = torch.tensor([[0, 7, 8, 2, 2, 9, 2], [0, 7, 2, 2, 9, 5, 2], [1, 0, 6, 2, 2, 5, 2]])
    for src in (right, left):
        a, b = split_pair(src, PAD, EOS)
        assert a.tolist() == [[0, 7, 8, 2], [0, 7, 2, 1], [0, 6, 2, 1]]
        assert b.tolist() == [[0, 9, 2, 1], [0, 9, 5, 2], [0, 5, 2, 1]]
    with pytest.raises(ValueError, match="--sentence-pair-encoding siamese needs sentence pairs"):
        split_pair(torch.tensor([[0, 7, 8, 2]]), PAD, EOS)
    with pytest.raises(ValueError, match="siamese"):
        split_pair(torch.tensor([[0, 7, 2, 8, 2, 9, 2]]), PAD, EOS)  # no </s> </s> between the sentences


def hf_sentence_embeddings(hf_dir, sentences):
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    enc = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = transformers.AutoModel.from_pretrained(hf_dir).eval()(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(h)
    emb = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)
    return emb, [ids[1:int(m.sum()) - 1] for ids, m in zip(enc["input_ids"].tolist(), enc["attention_mask"])]


def test_siamese_head_reads_the_sentence_transformers_embeddings(tmp_path, shared_data):
    hf_dir = minilm_dir()
    convert(hf_dir, str(tmp_path / "minilm"))
    model, dictionary, _ = load_converted_model(str(tmp_path / "minilm"))
    model.args.sentence_pair_encoding = "siamese"
    model.register_classification_head("sentence_classification_head", num_classes=2)
    model.eval()
    sents = real_sentences(shared_data)
    firsts, seconds = sents[0::2], sents[1::2]
    emb, pieces = hf_sentence_embeddings(hf_dir, firsts + seconds)
    u_hf, v_hf = emb[: len(firsts)], emb[len(firsts):]
    # the pipelines' pair input, <s> A </s> </s> B </s> in fairseq indices (4 + Hugging Face id), right-padded
    rows = [[0] + [i + 4 for i in a] + [2, 2] + [i + 4 for i in b] + [2]
            for a, b in zip(pieces[: len(firsts)], pieces[len(firsts):])]
    n = max(map(len, rows))
    src = torch.tensor([r + [dictionary.pad()] * (n - len(r)) for r in rows])
    seen = {}
    head = model.classification_heads["sentence_classification_head"]
    head.register_forward_hook(lambda m, inp, out: seen.update(features=inp[0]))  # returns None: output kept
    with torch.no_grad():
        logits, _ = model(src, classification_head_name="sentence_classification_head")
    assert logits.shape == (len(rows), 2)
    want = torch.cat([u_hf, v_hf, (u_hf - v_hf).abs(), u_hf * v_hf], dim=-1)
    got = seen["features"][:, 0]
    assert (got - want).abs().max().item() <= TOL, (got - want).abs().max().item()
    # siamese-cosine: the head reads cos(u, v) alone
    model.args.sentence_pair_encoding = "siamese-cosine"
    model.register_classification_head("cos_head", num_classes=2)
    model.classification_heads["cos_head"].register_forward_hook(lambda m, inp, out: seen.update(cos=inp[0]))
    with torch.no_grad():
        assert model(src, classification_head_name="cos_head")[0].shape == (len(rows), 2)
    want = (u_hf * v_hf).sum(-1, keepdim=True)
    assert seen["cos"].shape == (len(rows), 1, 1) and (seen["cos"][:, 0] - want).abs().max().item() <= TOL
    # joint (the default) reads <s> of the whole sequence: a different input to a head of another width
    model.args.sentence_pair_encoding = "joint"
    model.register_classification_head("joint_head", num_classes=2)
    with torch.no_grad():
        assert model(src, classification_head_name="joint_head")[0].shape == (len(rows), 2)
    assert model.classification_heads["joint_head"].dense.in_features == 384 != head.dense.in_features


def test_probe_features_of_the_real_minilm(shared_data):
    from fairseq_dpreg.pretrained.probe import pair_features

    hf_dir = minilm_dir()
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModel.from_pretrained(hf_dir).eval()
    sents = real_sentences(shared_data)
    pairs = list(zip(sents[0::2], sents[1::2]))
    f = pair_features(model, tok, pairs)
    n = len(pairs)
    assert {k: v.shape for k, v in f.items()} == {"joint [CLS]": (n, 384), "joint mean": (n, 384),
                                                  "siamese [u, v, |u-v|, u*v]": (n, 1536), "cosine(u, v)": (n, 1)}
    emb, _ = hf_sentence_embeddings(hf_dir, [a for a, _ in pairs] + [b for _, b in pairs])
    u, v = emb[:n].numpy(), emb[n:].numpy()
    assert abs(f["siamese [u, v, |u-v|, u*v]"][:, :384] - u).max() <= TOL
    assert abs(f["cosine(u, v)"][:, 0] - (u * v).sum(1)).max() <= TOL
