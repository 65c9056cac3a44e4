"""Fine-tuning the converted MiniLM through the user's scripts, plain and dotprod: SuperGLUE RTE and SQuAD 2.0
(slices of the real dev sets in ../shared/data), prepare.sh with the encoder's tokenizer -> a few updates of
train.sh's ``minilm`` recipe -> evaluate.sh. The checkpoint that comes out still holds the pretrained weights
(a few small updates away from them), so --restore-file really loaded them."""
import json
import math
import subprocess
import sys

import pytest
import torch

from test_convert_hf import minilm_dir
from test_superglue_train import json_records, run, slice_task

from fairseq_dpreg.glue import checkpoint  # noqa: F401  (allow-lists what fairseq checkpoints hold)

UPDATES = 3
PROBE = "encoder.sentence_encoder.layers.0.fc1.weight"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("enc") / "minilm"
    subprocess.run([sys.executable, str(repo_root / "scripts" / "convert_hf_encoder.py"), minilm_dir(), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def check_restored(ckpt, encoder):
    """Pretrained weights arrived (a fresh initialisation would differ by ~0.02 per entry, not by ~1e-4)."""
    start = torch.load(encoder / "model.pt", map_location="cpu", weights_only=True)["model"][PROBE]
    end = torch.load(ckpt, map_location="cpu", weights_only=True)["model"][PROBE]
    assert (end - start).abs().max().item() < 2e-3


@pytest.mark.parametrize("algo,pairs", [("plain", "joint"), ("dotprod", "joint"), ("dotprod", "siamese")])
def test_superglue_rte_from_minilm(algo, pairs, encoder, shared_data, tmp_path, repo_root, monkeypatch):
    ex = repo_root / "examples" / "superglue"
    monkeypatch.setenv("ENCODER_DIR", str(encoder))
    monkeypatch.setenv("PAIR_ENCODING", pairs)
    raw = slice_task(shared_data, tmp_path, "RTE", 24, 16)
    data, ckpt, out = tmp_path / "bin", tmp_path / "ckpt", tmp_path / "out"
    run("bash", ex / "prepare.sh", "RTE", raw, data, "--bpe", "hf", "--hf-dir", encoder, "--max-positions", "128")
    log = run("bash", ex / "train.sh", "minilm", algo, data, ckpt, "--max-update", UPDATES, "--batch-size", "8",
              "--log-interval", "1")
    records = json_records(log, "train_inner")
    assert len(records) == UPDATES, log[-3000:]
    assert ("dpreg_cos" in records[-1]) == (algo == "dotprod")
    assert f"Loaded checkpoint {encoder / 'model.pt'}" in log
    check_restored(ckpt / "checkpoint_last.pt", encoder)
    state = torch.load(ckpt / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    assert state["cfg"]["model"].sentence_pair_encoding == pairs
    head = state["model"]["classification_heads.sentence_classification_head.dense.weight"]
    assert head.shape[1] == 384 * (4 if pairs == "siamese" else 1)  # [u, v, |u-v|, u*v] or <s>
    run("bash", ex / "evaluate.sh", data, ckpt / "checkpoint_last.pt", out, "--cpu")
    metrics = json.loads((out / "valid.metrics.json").read_text())
    assert metrics["total"] == 16
    assert abs(float(json_records(log, "valid")[-1]["valid_accuracy"]) - metrics["accuracy"]) <= 0.051


def squad_slice(shared_data, root):
    """Two paragraphs of article 0 for training, one of article 1 for validation (real SQuAD 2.0 questions)."""
    doc = json.loads((shared_data / "squad2" / "dev-v2.0-half.json").read_text(encoding="utf-8"))
    parts = {"train.json": (0, doc["data"][0]["paragraphs"][:2]), "valid.json": (1, doc["data"][1]["paragraphs"][:1])}
    for name, (i, paragraphs) in parts.items():
        (root / name).write_text(json.dumps({"version": "v2.0", "data": [
            {"title": doc["data"][i]["title"], "paragraphs": paragraphs}]}), encoding="utf-8")
    return root / "train.json", root / "valid.json"


@pytest.mark.parametrize("algo", ["plain", "dotprod"])
def test_squad2_from_minilm(algo, encoder, shared_data, tmp_path, repo_root, monkeypatch):
    ex = repo_root / "examples" / "squad2"
    monkeypatch.setenv("ENCODER_DIR", str(encoder))
    train, valid = squad_slice(shared_data, tmp_path)
    data, ckpt, out = tmp_path / "bin", tmp_path / "ckpt", tmp_path / "out"
    run("bash", ex / "prepare.sh", data, "--train", train, "--valid", valid, "--tokenizer", "hf", "--hf-dir", encoder,
        "--max-seq-len", "128", "--doc-stride", "48", "--max-query-len", "32")
    log = run("bash", ex / "train.sh", "minilm", algo, data, ckpt, "--max-update", UPDATES, "--batch-size", "8",
              "--log-interval", "1", "--validate-interval-updates", "1", "--save-interval-updates", "1")
    records = json_records(log, "train_inner")
    assert len(records) == UPDATES, log[-3000:]
    assert ("dpreg_cos" in records[-1]) == (algo == "dotprod")
    check_restored(ckpt / "checkpoint_last.pt", encoder)
    # checkpoint_best.pt is the lowest valid loss: window accuracy would crown a model that answers "" everywhere
    valid_loss = [float(r["valid_loss"]) for r in json_records(log, "valid")]
    best = torch.load(ckpt / "checkpoint_best.pt", map_location="cpu", weights_only=True)["extra_state"]["best"]
    assert len(valid_loss) >= UPDATES and abs(best - min(valid_loss)) < 6e-4, (best, valid_loss)
    run("bash", ex / "evaluate.sh", data, ckpt / "checkpoint_last.pt", out, "--cpu", "--threshold-from", "train")
    metrics = json.loads((out / "valid.metrics.json").read_text())
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1"} <= set(metrics), metrics
    # the no-answer threshold tuned on the train split: its log-odds is the threshold the valid split was cut at
    tuned = json.loads((out / "threshold.json").read_text())
    p = min(max(tuned["best_f1_thresh"], 1e-12), 1 - 1e-12)
    assert tuned["tuned_on"] == "train" and abs(tuned["null_threshold"] - math.log(p / (1 - p))) < 1e-9
    answers = json.loads((out / "valid.pred.json").read_text())
    na_prob = json.loads((out / "valid.na_prob.json").read_text())
    for qid, answer in answers.items():  # "" exactly where null score - best span score > the tuned threshold
        q = na_prob[qid]
        if 1e-9 < q < 1 - 1e-9 and abs(math.log(q / (1 - q)) - tuned["null_threshold"]) > 1e-6:
            assert (answer == "") == (math.log(q / (1 - q)) > tuned["null_threshold"]), (qid, q, answer)
    context = json.loads(valid.read_text())["data"][0]["paragraphs"][0]["context"]
    assert all(a == "" or a in context for a in answers.values())  # answers are exact substrings
