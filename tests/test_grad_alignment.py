"""scripts/grad_alignment.py / fairseq_dpreg.alignment: cosines of held-out gradients, checked independently."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fairseq_dpreg import alignment

TINY = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
        "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--share-all-embeddings"]


@pytest.fixture(scope="module")
def trained(repo_root, tmp_path_factory):
    """A tiny transformer trained 2 updates with translation_dpreg + dotprod on the demo corpus."""
    w = tmp_path_factory.mktemp("align")
    run = dict(cwd=repo_root, check=True, capture_output=True)
    subprocess.run([sys.executable, "scripts/make_demo_corpus.py", str(w), "--n-train", "200", "--n-valid", "120",
                    "--n-test", "10"], **run)
    subprocess.run([sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "src", "--target-lang", "tgt",
                    "--trainpref", f"{w}/train", "--validpref", f"{w}/valid", "--joined-dictionary",
                    "--destdir", f"{w}/bin", "--workers", "1"], **run)
    subprocess.run([sys.executable, "-m", "fairseq_cli.train", f"{w}/bin", "--user-dir", "fairseq_dpreg", *TINY,
                    "--task", "translation_dpreg", "--optimizer", "dpreg_adam", "--dpreg-lambda", "0.1",
                    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--lr", "1e-3",
                    "--batch-size", "8", "--max-update", "2", "--cpu", "--num-workers", "0", "--seed", "1",
                    "--save-dir", f"{w}/ckpt", "--no-epoch-checkpoints", "--disable-validation"], **run)
    return w


def test_cosines_match_an_independent_computation(trained):
    ckpt, data = str(trained / "ckpt" / "checkpoint_last.pt"), str(trained / "bin")
    model, criterion, task, cfg = alignment.load_checkpoint(ckpt, data)
    batches = alignment.held_out_batches(task, model, cfg, "valid", 6, batch_size=10)
    assert len(batches) == 6
    ids = [set(b["id"].tolist()) for b in batches]
    assert all(not (ids[i] & ids[j]) for i in range(6) for j in range(i)), "batches overlap"
    got = alignment.gradient_cosines(model, criterion, batches)

    def grad(sample):  # .backward() and p.grad, cosine in numpy: a second route to the same numbers
        model.zero_grad(set_to_none=True)
        criterion(model, sample)[0].backward()
        return np.concatenate([(p.grad if p.grad is not None else torch.zeros_like(p)).double().numpy().ravel()
                               for p in model.parameters() if p.requires_grad])

    want = []
    for a, b in zip(batches[0::2], batches[1::2]):
        ga, gb = grad(a), grad(b)
        want.append(ga @ gb / np.linalg.norm(ga) / np.linalg.norm(gb))
    assert np.allclose(got, want, atol=1e-9), (got, want)
    assert all(-1 < c < 1 for c in got)  # distinct batches: never the trivial 1.0 of a batch with itself
    assert alignment.gradient_cosines(model, criterion, [batches[0], batches[0]]) == pytest.approx([1.0])


def test_command_line(repo_root, trained, tmp_path):
    out = tmp_path / "a.json"
    r = subprocess.run([sys.executable, "scripts/grad_alignment.py", str(trained / "ckpt" / "checkpoint_last.pt"),
                        str(trained / "bin"), "--pairs", "3", "--batch-size", "10", "--json", str(out)],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["pairs"] == 3 and len(res["cosines"]) == 3
    assert res["mean_cos"] == pytest.approx(np.mean(res["cosines"]))
    assert res["ci95"][0] <= res["mean_cos"] <= res["ci95"][1]
    r = subprocess.run([sys.executable, "scripts/grad_alignment.py", str(trained / "ckpt" / "checkpoint_last.pt"),
                        str(trained / "bin"), "--pairs", "100", "--batch-size", "10"],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 2 and "--pairs 100" in r.stderr and "batches" in r.stderr
