"""Loss scaling with the regularizer: fairseq's --fp16 (flat and per-parameter master copies),
--memory-efficient-fp16 and --amp, driven on the CPU through scripts/dist_worker.py (DPREG_EMULATE_GPU=1: the
same fairseq wrapper classes and loss scalers a GPU run uses; see that script for what is emulated).

Overflows are injected at the same calls of Trainer.train_step in a plain and a regularized run
(DPREG_INJECT_OVERFLOW): both must follow fairseq's own rules, exactly and identically."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from test_fairseq_glue import DPREG, PLAIN, TINY, gigaword_bin  # noqa: F401  (fixture)

import fairseq_dpreg.glue  # noqa: F401,E402

WORKER = str(Path(__file__).resolve().parents[1] / "scripts" / "dist_worker.py")
PRECISIONS = {
    "fp16": ["--fp16"],
    "fp16-no-flatten-grads": ["--fp16", "--fp16-no-flatten-grads"],
    "memory-efficient-fp16": ["--memory-efficient-fp16"],
    # fairseq 0.12 takes GradScaler's growth interval from --amp-init-scale once --amp-scale-window is set
    "amp": ["--amp", "--amp-batch-retries", "1", "--amp-scale-window", "4", "--amp-init-scale", "4"],
}
INJECTED = "3,7,8"  # amp: call 3 fails and its retry (call 4) passes; call 7 fails and so does its retry (8)


def run(data, save_dir, *args, inject=INJECTED, expect_ok=True):
    env = {**os.environ, "DPREG_EMULATE_GPU": "1", "DPREG_INJECT_OVERFLOW": inject,
           "DPREG_COUNT_FILE": str(save_dir) + ".json"}
    cmd = [sys.executable, WORKER, str(data), "--user-dir", "fairseq_dpreg", *TINY, "--cpu", "--save-dir",
           str(save_dir), *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600)
    if not expect_ok:
        return proc, None, []
    assert proc.returncode == 0, proc.stdout[-4000:]
    records = [json.loads(line.split("train_inner:", 1)[1]) for line in proc.stdout.splitlines()
               if "train_inner:" in line]
    return proc, json.loads(Path(str(save_dir) + ".json").read_text()), records


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_overflows_follow_fairseqs_loss_scale_rules_as_in_plain_training(gigaword_bin, tmp_path, precision):
    common = [*PRECISIONS[precision], "--fp16-scale-window", "4", "--max-update", "10"]
    # fp16 weights need a radius they can resolve (the start-up check says so otherwise); amp keeps fp32 ones
    radius = "0.01" if precision == "amp" else "2.0"
    _, plain, _ = run(gigaword_bin, tmp_path / "plain", *PLAIN, *common)
    proc, reg, recs = run(gigaword_bin, tmp_path / "reg", *DPREG, "--dpreg-radius", radius, *common)
    # after every call of train_step: the same number of updates done and the same loss scale
    assert reg["steps"] == plain["steps"]
    scales = [s for _, s in plain["steps"]]
    assert sum(b < a for a, b in zip(scales, scales[1:])) >= 2 and sum(b > a for a, b in zip(scales, scales[1:])) >= 1
    assert reg["updates"] == 10
    state = torch.load(tmp_path / "reg" / "checkpoint_last.pt", map_location="cpu")["last_optimizer_state"]
    # every update counted was applied (a stale skip flag would drop the one after an overflow) ...
    assert {float(s["step"]) for s in state["state"].values()} == {10.0}
    # ... and every call that applied nothing is counted, in the state and in the log
    assert state["dpreg"]["skipped"] == 3
    assert sum(float(r["dpreg_skipped"]) for r in recs) == 3
    assert state["dpreg"]["regularized"] == 10
    assert all(float(r["dpreg_reg_norm"]) > 0 for r in recs)  # the applied updates were regularized


def test_fp16_weights_too_coarse_for_the_radius_stop_at_start_up(gigaword_bin, tmp_path):
    proc, _, _ = run(gigaword_bin, tmp_path / "fp16", *DPREG, "--fp16", "--max-update", "3", inject="",
                     expect_ok=False)
    assert proc.returncode != 0
    assert "--dpreg-radius 0.01: the model's float16 weights cannot hold" in proc.stdout
    assert "use --amp" in proc.stdout and "train_inner" not in proc.stdout and "Traceback" not in proc.stdout


def test_bf16_is_refused_with_the_gpu_alternative(gigaword_bin, tmp_path):
    proc, _, _ = run(gigaword_bin, tmp_path / "bf16", *DPREG, "--bf16", "--max-update", "1", inject="",
                     expect_ok=False)
    assert proc.returncode != 0 and "on GPUs use --amp" in proc.stdout, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout


def _amp_sgd_step(amp_class, monkeypatch):
    """One --amp update of SGD (lr 1) on the loss <p, g>: the parameter should move by exactly -g."""
    import functools

    from fairseq.optim.sgd import SGD

    monkeypatch.setattr(torch.cuda.amp, "GradScaler", functools.partial(torch.amp.GradScaler, "cpu"))
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    g = torch.tensor([0.5, 0.25, -1.0])
    sgd = SGD(SimpleNamespace(lr=[1.0], momentum=0.0, weight_decay=0.0), [p])
    cfg = SimpleNamespace(optimizer=None, common=SimpleNamespace(fp16_init_scale=128, amp_scale_window=None,
                                                                 min_loss_scale=1e-4))
    amp = amp_class(cfg, [p], sgd)
    amp.zero_grad()
    amp.backward((p * g).sum())
    amp.clip_grad_norm(0.0)
    before = p.detach().clone()
    amp.step()
    return before - p.detach(), g


def test_amp_unscales_the_update_once(monkeypatch):
    from fairseq import optim
    from fairseq.optim.amp_optimizer import AMPOptimizer

    moved, g = _amp_sgd_step(optim.AMPOptimizer, monkeypatch)  # what --amp builds once the plugin is loaded
    assert torch.allclose(moved, g)
    stock, g = _amp_sgd_step(AMPOptimizer, monkeypatch)  # fairseq 0.12 as shipped: divided by the scale twice
    assert torch.allclose(stock, g / 128)


def test_amp_resume_continues_the_same_trajectory(gigaword_bin, tmp_path):
    """--amp checkpoints keep the plugin's state and the loss scale (the stock AMPOptimizer saved neither)."""
    args = [*DPREG, *PRECISIONS["amp"], "--dpreg-interval", "2"]
    run(gigaword_bin, tmp_path / "one", *args, "--max-update", "6", inject="")
    run(gigaword_bin, tmp_path / "two", *args, "--max-update", "3", inject="")
    proc, _, _ = run(gigaword_bin, tmp_path / "two", *args, "--max-update", "6", inject="")
    assert "Loaded checkpoint" in proc.stdout
    a = torch.load(tmp_path / "one" / "checkpoint_last.pt", map_location="cpu")
    b = torch.load(tmp_path / "two" / "checkpoint_last.pt", map_location="cpu")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["last_optimizer_state"], b["last_optimizer_state"]
    assert sa["dpreg"] == sb["dpreg"] and sa["dpreg"]["regularized"] == 3
    assert sa["amp_scaler"] == sb["amp_scaler"] and sa["amp_scaler"]["scale"] == 256.0  # 128, grown once


GPU_RECIPES = [("gigaword", "transformer-base"), ("gigaword", "bart-large"), ("squad2", "roberta-base"),
               ("squad2", "roberta-large"), ("superglue", "roberta-base"), ("superglue", "roberta-large")]


@pytest.mark.parametrize("example,recipe", GPU_RECIPES)
def test_shipped_gpu_recipes_regularize_in_a_precision_that_can_perturb(tmp_path, repo_root, example, recipe):
    """Every GPU recipe runs --amp (fp32 weights) by default, plain included (paired runs share a precision);
    --fp16 only when asked for with PRECISION=fp16."""
    data = tmp_path / "bin"
    (data / "input0").mkdir(parents=True)
    for name in ("dict.src.txt", "dict.txt", "train.idx", "input0/train.idx"):
        (data / name).write_text("")
    (data / "qa_prepare.json").write_text(json.dumps({"tokenizer": "gpt2"}))
    (data / "superglue.json").write_text(json.dumps({"task": "RTE", "fairseq_task": "sentence_prediction",
                                                     "num_classes": 2, "bpe": "gpt2",
                                                     "splits": {"train": {"examples": 100}}}))
    ckpt = tmp_path / "model.pt"
    ckpt.write_text("")
    env = {**os.environ, "DRY_RUN": "1", "BART_PATH": str(ckpt), "ROBERTA_PATH": str(ckpt)}
    script = repo_root / "examples" / example / "train.sh"
    for algo in ("plain", "dotprod", "reptile", "fomaml"):
        out = subprocess.run(["bash", str(script), recipe, algo, str(data), str(tmp_path / "run")], env=env,
                             capture_output=True, text=True, check=True).stdout.split()
        assert "--amp" in out and not any(a.startswith("--fp16") or a.startswith("--bf16") for a in out), out
        if algo == "dotprod":  # under amp the radius defaults to 0.1 (fp16 compute noise, see README)
            assert out[out.index("--dpreg-radius") + 1] == "0.1"
    out = subprocess.run(["bash", str(script), recipe, "dotprod", str(data), str(tmp_path / "run")],
                         env={**env, "PRECISION": "fp16"}, capture_output=True, text=True, check=True).stdout.split()
    assert "--fp16" in out and "--amp" not in out
