"""SuperGLUE end to end on slices of the real dev sets (../shared/data/superglue): examples/superglue/prepare.sh
(SentencePiece) -> a few regularized updates of a tiny from-scratch RoBERTa through train.sh (python -m
fairseq_cli.train --user-dir fairseq_dpreg) -> predict.py -> scripts/superglue_eval.py; and train.sh's switch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EX = REPO / "examples" / "superglue"
PY = sys.executable
UPDATES = 6
TRAIN_FLAGS = ["--dpreg-lambda", "0.1", "--dpreg-radius", "0.01", "--log-format", "json", "--log-interval", "1"]


def script_env():
    return dict(os.environ, PYTHON=PY, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def run(*cmd, cwd=None):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=script_env(), cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(str(c) for c in cmd)} failed ({proc.returncode}):\n{proc.stdout[-5000:]}")
    return proc.stdout


def slice_task(shared_data, root, task, n_train, n_valid):
    """The first n_train dev records as train.jsonl, the next n_valid as val.jsonl."""
    lines = (shared_data / "superglue" / task / "val.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) >= n_train + n_valid
    raw = root / "raw"
    raw.mkdir(parents=True)
    (raw / "train.jsonl").write_text("\n".join(lines[:n_train]) + "\n", encoding="utf-8")
    (raw / "val.jsonl").write_text("\n".join(lines[n_train:n_train + n_valid]) + "\n", encoding="utf-8")
    return raw


def json_records(log, tag):
    return [json.loads(line.split(f"| {tag} | ", 1)[1]) for line in log.splitlines() if f"| {tag} | " in line]


def pipeline(shared_data, root, task, n_train, n_valid):
    """prepare -> 6 dotprod updates -> evaluate; returns (training log, train_inner records, metrics, predictions)."""
    raw = slice_task(shared_data, root, task, n_train, n_valid)
    data, ckpt, out = root / "bin", root / "ckpt", root / "out"
    run("bash", EX / "prepare.sh", task, raw, data, "--bpe", "spm", "--vocab-size", "1000")
    desc = json.loads((data / "superglue.json").read_text())
    assert desc["splits"]["valid"]["examples"] == n_valid and desc["splits"]["train"]["examples"] == n_train
    log = run("bash", EX / "train.sh", "cpu-tiny", "dotprod", data, ckpt, *TRAIN_FLAGS, "--max-update", UPDATES)
    assert (ckpt / "checkpoint_last.pt").is_file()
    run("bash", EX / "evaluate.sh", data, ckpt / "checkpoint_last.pt", out, "--cpu")
    metrics = json.loads((out / "valid.metrics.json").read_text())
    preds = [json.loads(line) for line in (out / "valid.pred.jsonl").read_text().splitlines() if line.strip()]
    return log, json_records(log, "train_inner"), metrics, preds


def check_pipeline(log, records, metrics, preds, n_valid):
    assert len(records) == UPDATES, log[-3000:]
    assert metrics["total"] == n_valid
    assert 0.0 <= metrics["accuracy"] <= 100.0
    assert len(preds) == n_valid
    assert len({p["idx"] for p in preds}) == n_valid
    # the predictions score what fairseq's own validation of the same checkpoint scored
    valid = json_records(log, "valid")
    assert valid, log[-3000:]
    assert abs(float(valid[-1]["valid_accuracy"]) - metrics["accuracy"]) <= 0.051


def check_regularized(records):
    for rec in records:
        assert "dpreg_cos" in rec, rec
        assert -1.0 <= float(rec["dpreg_cos"]) <= 1.0
        assert float(rec["dpreg_skipped"]) == 0


def test_rte_prepare_train_dotprod_predict_eval(shared_data, tmp_path):
    log, records, metrics, preds = pipeline(shared_data, tmp_path, "RTE", 120, 40)
    assert "task: SentencePredictionDpregTask" in log
    check_pipeline(log, records, metrics, preds, 40)
    check_regularized(records)
    assert {p["label"] for p in preds} <= {"entailment", "not_entailment"}
    check_train_again(tmp_path / "bin", tmp_path / "ckpt")


def check_train_again(data, ckpt):
    """train.sh again on the finished SAVE_DIR: nothing is trained (fairseq-train would take a 7th update and
    overwrite the checkpoints); with a higher --max-update it resumes and trains only the updates added."""
    from fairseq_dpreg.checkpoint_io import updates_done

    last = ckpt / "checkpoint_last.pt"
    before = last.read_bytes()
    again = run("bash", EX / "train.sh", "cpu-tiny", "dotprod", data, ckpt, *TRAIN_FLAGS, "--max-update", UPDATES)
    assert again == (f"train.sh: {ckpt}/checkpoint_last.pt already reached --max-update {UPDATES} ({UPDATES} "
                     "updates): nothing to train (raise --max-update to train on, or use a new SAVE_DIR to start "
                     "over)\n")
    assert last.read_bytes() == before
    more = run("bash", EX / "train.sh", "cpu-tiny", "dotprod", data, ckpt, *TRAIN_FLAGS, f"--max-update={UPDATES + 2}")
    assert "train.sh: resuming from" in more
    assert [r["num_updates"] for r in json_records(more, "train_inner")] == [str(UPDATES + 1), str(UPDATES + 2)]
    assert updates_done(last) == UPDATES + 2


def test_copa_prepare_train_dotprod_predict_eval(shared_data, tmp_path):
    log, records, metrics, preds = pipeline(shared_data, tmp_path, "COPA", 70, 30)
    # sentence_ranking reads raw integer labels, not a binarized label column
    assert (tmp_path / "bin" / "label" / "valid.label").read_text().split() == [
        str(json.loads(line)["label"]) for line in (tmp_path / "raw" / "val.jsonl").read_text().splitlines()
    ]
    check_pipeline(log, records, metrics, preds, 30)
    assert {p["label"] for p in preds} <= {0, 1}
    assert "task: SentenceRankingDpregTask" in log
    check_regularized(records)


# -- train.sh's switch (no training: DRY_RUN prints the command) ---------------------------------------------


def fake_data(root, fairseq_task, num_classes, bpe, n_train=100):
    (root / "input0").mkdir(parents=True)
    (root / "input0" / "train.idx").write_bytes(b"")
    desc = {"task": "X", "fairseq_task": fairseq_task, "num_classes": num_classes, "bpe": bpe,
            "splits": {"train": {"examples": n_train}}}
    (root / "superglue.json").write_text(json.dumps(desc))
    return root


def dry_run(*args, **env):
    proc = subprocess.run(["bash", str(EX / "train.sh"), *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=dict(script_env(), DRY_RUN="1", **env))
    return proc


def flag(cmd, name):
    words = cmd.split()
    return words[len(words) - 1 - words[::-1].index(name) + 1]  # the last occurrence wins, as in argparse


@pytest.mark.parametrize("fairseq_task,num_classes", [("sentence_prediction", 3), ("sentence_ranking", 2)])
@pytest.mark.parametrize("algo", ["plain", "dotprod", "reptile", "fomaml"])
def test_train_sh_switch(tmp_path, fairseq_task, num_classes, algo):
    data = fake_data(tmp_path / "bin", fairseq_task, num_classes, "gpt2")
    (tmp_path / "roberta").mkdir()
    (tmp_path / "roberta" / "model.pt").write_bytes(b"")
    proc = dry_run("roberta-base", algo, data, tmp_path / "ck", "--seed", "7", ROBERTA_PATH=str(tmp_path / "roberta"))
    assert proc.returncode == 0, proc.stderr
    cmd = proc.stdout
    assert "-m fairseq_cli.train" in cmd and f"--user-dir {REPO / 'fairseq_dpreg'}" in cmd
    assert flag(cmd, "--criterion") == fairseq_task
    assert flag(cmd, "--num-classes") == str(num_classes)
    assert flag(cmd, "--restore-file") == str(tmp_path / "roberta" / "model.pt")
    assert flag(cmd, "--arch") == "roberta_base" and flag(cmd, "--lr") == "1e-05"
    assert flag(cmd, "--init-token") == "0" and flag(cmd, "--separator-token") == "2"
    for f in ("--reset-optimizer", "--reset-dataloader", "--reset-meters", "--find-unused-parameters",
              "--maximize-best-checkpoint-metric", "--amp"):
        assert f in cmd.split(), f
    assert flag(cmd, "--seed") == "7"  # extra flags come last and win
    # 100 examples, batches of 16: 7 updates an epoch, 10 epochs
    assert flag(cmd, "--total-num-update") == "70" and flag(cmd, "--warmup-updates") == "4"
    if algo == "plain":
        assert flag(cmd, "--task") == fairseq_task and flag(cmd, "--optimizer") == "adam"
        assert "--dpreg-algorithm" not in cmd
    else:
        assert flag(cmd, "--task") == fairseq_task + "_dpreg" and flag(cmd, "--optimizer") == "dpreg_adam"
        assert flag(cmd, "--dpreg-algorithm") == algo
        # under --amp the radius defaults to 0.1 (README, "Mixed precision")
        assert flag(cmd, "--dpreg-lambda") == "0.1" and flag(cmd, "--dpreg-radius") == "0.1"
        assert ("--dpreg-alpha" in cmd) == (algo != "dotprod")


def test_train_sh_refuses_mismatched_data(tmp_path):
    spm = fake_data(tmp_path / "spm", "sentence_prediction", 2, "spm")
    gpt2 = fake_data(tmp_path / "gpt2", "sentence_prediction", 2, "gpt2")
    (tmp_path / "model.pt").write_bytes(b"")
    proc = dry_run("roberta-large", "dotprod", spm, tmp_path / "ck", ROBERTA_PATH=str(tmp_path / "model.pt"))
    assert proc.returncode != 0 and "--bpe gpt2" in proc.stderr
    proc = dry_run("cpu-tiny", "dotprod", gpt2, tmp_path / "ck")
    assert proc.returncode != 0 and "--bpe spm" in proc.stderr
    proc = dry_run("roberta-base", "dotprod", gpt2, tmp_path / "ck", ROBERTA_PATH=str(tmp_path / "missing"))
    assert proc.returncode != 0 and "missing checkpoint" in proc.stderr
    proc = dry_run("cpu-tiny", "sgd", spm, tmp_path / "ck")
    assert proc.returncode != 0 and "unknown ALGO" in proc.stderr
    proc = dry_run("cpu-tiny", "dotprod", spm, tmp_path / "ck", "--update-freq", "4")
    assert proc.returncode == 0
    assert flag(proc.stdout, "--total-num-update") == "20"  # 7 batches an epoch -> 2 updates of 4, x 10


def test_max_update_shortens_the_learning_rate_schedule(tmp_path):
    """--max-update N as an extra flag: the polynomial decay spans N updates (not 10 epochs), warm-up 6% of N;
    TOTAL_UPDATES still wins when given."""
    data = fake_data(tmp_path / "bin", "sentence_prediction", 2, "spm")
    cmd = dry_run("cpu-tiny", "plain", data, tmp_path / "ck", "--max-update", "50").stdout
    assert flag(cmd, "--total-num-update") == "50" and flag(cmd, "--max-update") == "50"
    assert flag(cmd, "--warmup-updates") == "3"
    cmd = dry_run("cpu-tiny", "plain", data, tmp_path / "ck", "--max-update", "50", TOTAL_UPDATES="200").stdout
    assert flag(cmd, "--total-num-update") == "200" and flag(cmd, "--max-update") == "50"
