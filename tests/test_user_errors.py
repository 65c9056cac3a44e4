"""What a new user meets when something is off: errors that name the user's own file, a checkpoint given as a
folder or a file, the resume notice of train.sh, -h of every example script, a checkpoint of the wrong task.
Each test runs the example scripts as a user would (fairseq-train replaced by a stub where training is not
the point)."""

import argparse
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq_dpreg.qa.data import QADataError, make_synthetic_squad2

REPO = Path(__file__).resolve().parents[1]
EX = REPO / "examples"
PY = sys.executable


def script_env(**extra):
    env = dict(os.environ, PYTHON=PY, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.update(extra)
    return env


def run(cmd, cwd=None, **env):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=script_env(**env))


# ---------------------------------------------------------------------------------------------------
# QA preparation: the messages and qa_prepare.json name the user's files


@pytest.fixture
def qa_files(tmp_path):
    """tmp/bad/{good,sq_offset,sq_dup,sq_trunc}.json and tmp/work, the folder the user runs from."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (tmp_path / "work").mkdir()
    doc = make_synthetic_squad2(3, seed=5, title="dev")
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    (bad / "good.json").write_text(text, encoding="utf-8")
    shifted = copy.deepcopy(doc)
    shifted["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 1
    (bad / "sq_offset.json").write_text(json.dumps(shifted, indent=1), encoding="utf-8")
    dup = copy.deepcopy(doc)
    dup["data"][0]["paragraphs"][1]["qas"][0]["id"] = "dev-0-0"
    (bad / "sq_dup.json").write_text(json.dumps(dup, indent=1), encoding="utf-8")
    (bad / "sq_trunc.json").write_text(text[: text.index('"question"', len(text) // 2) + 15], encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("name,message", [
    ("sq_offset", r"question id 'dev-0-0': answers\[0\]: answer offsets do not match the context text"),
    ("sq_dup", r"question id 'dev-0-0': duplicate question id"),
    ("sq_trunc", r"line \d+ column \d+: malformed JSON: Unterminated string starting here"),
])
def test_qa_prepare_sh_names_the_users_file(qa_files, name, message):
    proc = run(["bash", EX / "squad2" / "prepare.sh", "out", "--train", "../bad/good.json",
                "--valid", f"../bad/{name}.json", "--vocab-size", "60"], cwd=qa_files / "work")
    assert proc.returncode != 0
    error = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"qa_prepare\.py: error: \.\./bad/{name}\.json: {message}.*", error), error
    assert ".tmp." not in proc.stderr
    assert not error.endswith(" at")  # json's "Unterminated string starting at" with its position cut off
    assert sorted(p.name for p in (qa_files / "work").iterdir()) == []  # no output, no temporary folder


def test_qa_prepare_py_json_error_and_no_output_folder(qa_files):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import qa_prepare
    finally:
        sys.path.remove(str(REPO / "scripts"))
    trunc = str(qa_files / "bad" / "sq_trunc.json")
    with pytest.raises(QADataError, match=re.escape(trunc) + r": line \d+ column \d+: malformed JSON: "
                                          r"Unterminated string starting here$"):
        qa_prepare.main(["--train", trunc, "--destdir", str(qa_files / "o"), "--quiet"])
    assert not (qa_files / "o").exists()


def test_qa_prepare_json_records_the_users_inputs(qa_files):
    proc = run(["bash", EX / "squad2" / "prepare.sh", "out", "--train", "../bad/good.json",
                "--valid", "../bad/good.json", "--vocab-size", "60"], cwd=qa_files / "work")
    assert proc.returncode == 0, proc.stderr
    settings = json.loads((qa_files / "work" / "out" / "qa_prepare.json").read_text(encoding="utf-8"))
    good = str(qa_files / "bad" / "good.json")
    assert settings["inputs"] == {"train": good, "valid": good}
    assert sorted(p.name for p in (qa_files / "work" / "out" / "gold").iterdir()) == ["train.json", "valid.json"]


def test_qa_synthetic_set_is_described_as_it_is(tmp_path):
    import sentencepiece as spm

    proc = run(["bash", EX / "squad2" / "prepare.sh", tmp_path / "syn", "--synthetic"])
    assert proc.returncode == 0, proc.stderr
    settings = json.loads((tmp_path / "syn" / "qa_prepare.json").read_text(encoding="utf-8"))
    assert settings["inputs"] == {"train": "gold/train.json", "valid": "gold/valid.json"}  # inside DATA_BIN
    assert sorted(p.name for p in (tmp_path / "syn" / "gold").iterdir()) == ["train.json", "valid.json"]
    pieces = spm.SentencePieceProcessor(model_file=str(tmp_path / "syn" / "spm.model")).get_piece_size()
    readme = (EX / "squad2" / "README.md").read_text(encoding="utf-8")
    assert "1000-piece" not in readme and f"gets {pieces}:" in readme
    assert f"gives {pieces})" in (EX / "squad2" / "prepare.sh").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------
# train.sh: a pretrained checkpoint as a folder or a file; the resume notice


def fake_data_bin(root, bpe):
    """The files train.sh of every example reads before training (bpe: gpt2 or spm)."""
    (root / "input0").mkdir(parents=True)
    for name in ("dict.src.txt", "dict.txt", "train.idx", "input0/train.idx"):
        (root / name).write_text("")
    (root / "qa_prepare.json").write_text(json.dumps({"tokenizer": "gpt2" if bpe == "gpt2" else "sentencepiece"}))
    (root / "superglue.json").write_text(json.dumps({"task": "RTE", "fairseq_task": "sentence_prediction",
                                                     "num_classes": 2, "bpe": bpe,
                                                     "splits": {"train": {"examples": 100}}}))
    return root


PRETRAINED = [("squad2", "roberta-base", "ROBERTA_PATH"), ("superglue", "roberta-base", "ROBERTA_PATH"),
              ("gigaword", "bart-large", "BART_PATH")]


def restore_file(cmd):
    words = cmd.split()
    return words[words.index("--restore-file") + 1]


@pytest.mark.parametrize("example,recipe,var", PRETRAINED)
def test_pretrained_checkpoint_as_folder_or_file(tmp_path, example, recipe, var):
    data = fake_data_bin(tmp_path / "bin", "gpt2")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pt").write_text("")
    train = EX / example / "train.sh"
    cmd = ["bash", train, recipe, "plain", data, tmp_path / "run"]
    folder = run(cmd, DRY_RUN="1", **{var: str(tmp_path / "model")})
    assert folder.returncode == 0, folder.stderr
    assert restore_file(folder.stdout) == str(tmp_path / "model" / "model.pt")
    file = run(cmd, DRY_RUN="1", **{var: str(tmp_path / "model" / "model.pt")})
    assert file.returncode == 0 and restore_file(file.stdout) == str(tmp_path / "model" / "model.pt")
    (tmp_path / "empty").mkdir()
    missing = run(cmd, DRY_RUN="1", **{var: str(tmp_path / "empty")})
    assert missing.returncode != 0
    assert missing.stderr == (f"train.sh: error: {tmp_path / 'empty' / 'model.pt'}: missing checkpoint ({var}: a "
                              "folder holding model.pt, or the model.pt file)\n")
    header = " ".join(train.read_text().split("set -euo")[0].replace("#", " ").split())
    assert f"{var} = the checkpoint folder (" in header and "holding model.pt) or the file" in header
    assert "`model.pt` file itself" in " ".join((EX / example / "README.md").read_text().split())


@pytest.fixture
def stub_trainer(tmp_path):
    """FAIRSEQ_TRAIN (gigaword, squad2) and PYTHON (superglue runs `$PY -m fairseq_cli.train`) that train nothing."""
    stub = tmp_path / "fairseq-train"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    py = tmp_path / "python"
    py.write_text(f'#!/bin/sh\n[ "$1" = -m ] && exit 0\nexec "{PY}" "$@"\n')
    py.chmod(0o755)
    return {"FAIRSEQ_TRAIN": str(stub), "PYTHON": str(py)}


@pytest.mark.parametrize("example,recipe", [("gigaword", "cpu-small"), ("squad2", "cpu-tiny"),
                                            ("superglue", "cpu-tiny")])
def test_train_sh_says_it_resumes(tmp_path, stub_trainer, example, recipe):
    data = fake_data_bin(tmp_path / "bin", "spm")
    save = tmp_path / "run"
    cmd = ["bash", EX / example / "train.sh", recipe, "plain", data, save]
    fresh = run(cmd, **stub_trainer)
    assert fresh.returncode == 0, fresh.stderr
    assert "resuming" not in fresh.stderr
    (save / "checkpoint_last.pt").write_text("")
    again = run(cmd, **stub_trainer)
    assert again.returncode == 0, again.stderr
    assert again.stderr == (f"train.sh: resuming from {save}/checkpoint_last.pt (fairseq's behaviour; use a new "
                            "SAVE_DIR or delete it to start over)\n")
    dry = run(cmd, DRY_RUN="1", **stub_trainer)
    assert dry.returncode == 0 and dry.stderr == ""
    readme = " ".join((EX / example / "README.md").read_text().split())
    assert ("`train.sh: resuming from SAVE_DIR/checkpoint_last.pt (fairseq's behaviour; use a new SAVE_DIR or delete "
            "it to start over)`") in readme


@pytest.mark.parametrize("example,recipe,var", PRETRAINED)
def test_train_sh_says_a_restore_file_starts_over(tmp_path, stub_trainer, example, recipe, var):
    """--restore-file (the pretrained model) wins over SAVE_DIR/checkpoint_last.pt in fairseq: no resuming."""
    data = fake_data_bin(tmp_path / "bin", "gpt2")
    (tmp_path / "model.pt").write_text("")
    save = tmp_path / "run"
    save.mkdir()
    (save / "checkpoint_last.pt").write_text("")
    proc = run(["bash", EX / example / "train.sh", recipe, "plain", data, save], **{var: str(tmp_path / "model.pt")},
               **stub_trainer)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (f"train.sh: {save}/checkpoint_last.pt exists, but this run starts again from "
                           f"{tmp_path / 'model.pt'} (--restore-file) and overwrites the checkpoints in {save} "
                           "(use a new SAVE_DIR to keep them)\n")
    # an explicit --restore-file checkpoint_last.pt (the fairseq default) resumes
    proc = run(["bash", EX / example / "train.sh", recipe, "plain", data, save, "--restore-file", "checkpoint_last.pt"],
               **{var: str(tmp_path / "model.pt")}, **stub_trainer)
    assert proc.returncode == 0 and "train.sh: resuming from" in proc.stderr


# ---------------------------------------------------------------------------------------------------
# -h of every example script


@pytest.mark.parametrize("script", sorted(str(p.relative_to(EX)) for p in EX.glob("*/*.sh")))
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_example_scripts_help_exits_0(script, flag):
    proc = run(["bash", EX / script, flag])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n", 1)[0].endswith(".") and f"examples/{script}" in proc.stdout
    assert run(["bash", EX / script]).returncode == 2  # no arguments: usage, status 2


# ---------------------------------------------------------------------------------------------------
# SuperGLUE evaluate.sh with a checkpoint of another task


@pytest.mark.parametrize("state,task", [
    ({"cfg": {"task": {"_name": "extractive_qa", "data": "x"}}, "model": {}}, "extractive_qa"),
    ({"args": argparse.Namespace(task="translation", arch="transformer"), "model": {}}, "translation"),
    ({"cfg": {"task": argparse.Namespace(_name="sentence_ranking", task="sentence_ranking")}}, "sentence_ranking"),
])
def test_superglue_evaluate_refuses_a_checkpoint_of_another_task(tmp_path, state, task):
    import torch

    data = tmp_path / "bin"
    data.mkdir()
    (data / "superglue.json").write_text(json.dumps({"task": "RTE", "fairseq_task": "sentence_prediction",
                                                     "labels": ["entailment", "not_entailment"]}))
    (data / "valid.ids").write_text('{"idx": 0}\n')
    ckpt = tmp_path / "qa" / "checkpoint_best.pt"
    ckpt.parent.mkdir()
    torch.save(state, ckpt)
    proc = run(["bash", EX / "superglue" / "evaluate.sh", data, ckpt, tmp_path / "out", "--cpu"])
    assert proc.returncode == 2
    assert proc.stderr == (f"predict.py: error: {ckpt}: a checkpoint of task {task}, not of sentence_prediction or "
                           "sentence_prediction_dpreg (give a checkpoint trained by examples/superglue/train.sh on "
                           "this task)\n")
