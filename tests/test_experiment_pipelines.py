"""The runner's squad2 and gigaword paths through the project's recipes (tiny data, 2 updates), and the grid files
shipped in examples/experiments."""
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from fairseq_dpreg.experiment.grid import load_grid
from fairseq_dpreg.experiment.runner import run_dir
from runner_common import PY, REPO, SCRIPT, env


def test_squad2_grid_through_the_qa_recipes(tmp_path):
    """The runner's squad2 path: examples/squad2/{train,evaluate}.sh (cpu-tiny, 2 updates) on synthetic SQuAD 2.0
    data, scored by the official evaluator's F1, with the gradient alignment of the QA checkpoint."""
    from fairseq_dpreg.qa.data import make_synthetic_squad2

    for name, n, seed in (("train.json", 20, 11), ("dev.json", 8, 12)):
        (tmp_path / name).write_text(json.dumps(make_synthetic_squad2(n, seed=seed, title=name)), encoding="utf-8")
    data = tmp_path / "bin"
    subprocess.run(["bash", str(REPO / "examples" / "squad2" / "prepare.sh"), str(data), "--train",
                    str(tmp_path / "train.json"), "--valid", str(tmp_path / "dev.json"), "--vocab-size", "150",
                    "--max-seq-len", "48", "--doc-stride", "16", "--max-query-len", "16"], check=True, env=env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    grid = {"pipeline": "squad2", "recipe": "cpu-tiny", "data": str(data), "out": str(tmp_path / "o"),
            "metric": {"key": "f1", "split": "valid"}, "seeds": [1], "flags": ["--max-update", "2"],
            "eval_flags": ["--cpu"], "baseline": "plain", "alignment": {"pairs": 2, "batch_size": 2},
            "conditions": [{"name": "plain", "algo": "plain"}, {"name": "dotprod", "algo": "dotprod"}]}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid))
    proc = subprocess.run([PY, str(SCRIPT), str(path)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    assert proc.returncode == 0, proc.stdout
    for c in ("plain", "dotprod"):
        res = json.loads((Path(run_dir(load_grid(str(path)), c, 1)) / "result.json").read_text())
        assert res["status"] == "ok" and res["steps"][0]["argv"][1].endswith("examples/squad2/train.sh")
        assert {"f1", "exact", "HasAns_f1", "NoAns_f1"} <= set(res["metrics"]["valid"])
        assert -1 <= res["metrics"]["alignment"]["mean_cos"] <= 1
    rows = {r["name"]: r for r in json.loads((tmp_path / "o" / "results.json").read_text())["conditions"]}
    assert rows["plain"]["n"] == rows["dotprod"]["n"] == 1 and rows["dotprod"]["dpreg_cos"] is not None


@pytest.mark.parametrize("path", sorted((REPO / "examples" / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_grids_load(path):
    grid = load_grid(str(path))
    assert grid.conditions and len(grid.seeds) >= 5 and grid.alignment


def test_the_rte_core_grid_runs_the_full_grids_runs():
    """superglue_minilm_rte_core.yaml shares its run folders with superglue_minilm_rte.yaml: same folder, and for
    each of its conditions the same commands and environment as the full grid's condition of that name."""
    from fairseq_dpreg.experiment.runner import env_overrides, steps

    ex = REPO / "examples" / "experiments"
    core, full = load_grid(str(ex / "superglue_minilm_rte_core.yaml")), load_grid(str(ex / "superglue_minilm_rte.yaml"))
    assert core.out == full.out
    by_name = {c.name: c for c in full.conditions}
    for c in core.conditions:
        for s in core.seeds:
            assert steps(core, c, s) == steps(full, by_name[c.name], s)
            assert env_overrides(core, c, 1) == env_overrides(full, by_name[c.name], 1)


def test_gigaword_grid_through_the_summarization_recipes(shared_data, tmp_path):
    """The runner's gigaword path, as gigaword_warm.yaml uses it: examples/gigaword/{prepare,train,evaluate}.sh
    (cpu-small shrunk, 2 updates) on a slice of the shared pairs, ROUGE-1 on test, the baseline chosen among two
    plain candidates by ROUGE-1 on valid, and the gradient alignment of the seq2seq checkpoint on valid."""
    from test_gigaword_pipeline import TINY

    giga = shared_data / "gigaword"
    raw = tmp_path / "raw"
    raw.mkdir()
    slices = {"train": ("train", 0, 200), "valid": ("valid", 0, 12), "test": ("valid", 12, 24)}
    for split, (src, a, b) in slices.items():
        for side in ("src", "tgt"):
            lines = (giga / f"{src}.{side}").read_text(encoding="utf-8").splitlines()[a:b]
            (raw / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = tmp_path / "bin"
    subprocess.run(["bash", str(REPO / "examples" / "gigaword" / "prepare.sh"), str(raw), str(data),
                    "--vocab-size", "300"], check=True, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    grid = {"pipeline": "gigaword", "recipe": "cpu-small", "data": str(data), "out": str(tmp_path / "o"),
            "checkpoint": "checkpoint_best.pt", "metric": {"key": "rouge1.f", "split": "test"}, "seeds": [1],
            "flags": TINY + ["--max-update", "2"], "eval_flags": ["--beam", "2", "--max-len-b", "5"],
            "baseline": {"best_of": ["plain-a", "plain-b"], "select_on": {"split": "valid", "key": "rouge1.f"}},
            "alignment": {"pairs": 2, "max_tokens": 64, "subset": "valid"},
            "conditions": [{"name": "plain-a", "algo": "plain", "flags": ["--lr", "1e-3"]},
                           {"name": "plain-b", "algo": "plain", "flags": ["--lr", "3e-3"]},
                           {"name": "dotprod", "algo": "dotprod", "env": {"DPREG_LAMBDA": 0.1}}]}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid))
    proc = subprocess.run([PY, str(SCRIPT), str(path), "--jobs", "2"], env=env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout
    for c in ("plain-a", "plain-b", "dotprod"):
        res = json.loads((Path(run_dir(load_grid(str(path)), c, 1)) / "result.json").read_text())
        assert res["status"] == "ok" and res["steps"][0]["argv"][1].endswith("examples/gigaword/train.sh")
        splits = ("test", "valid") if c.startswith("plain") else ("test",)  # valid only selects the baseline
        evals = [s for s in res["steps"] if s["name"].startswith("evaluate")]
        assert [s["argv"][4] for s in evals] == [str(data / "raw" / f"{s}.src") for s in splits]
        for split in splits:
            assert 0 <= res["metrics"][split]["rouge1"]["f"] <= 100 and res["metrics"][split]["n_lines"] == 12
        assert -1 <= res["metrics"]["alignment"]["mean_cos"] <= 1
    table = json.loads((tmp_path / "o" / "results.json").read_text())
    assert table["baseline"]["selected"] in ("plain-a", "plain-b")
    rows = {r["name"]: r for r in table["conditions"]}
    assert all(rows[c]["n"] == 1 for c in rows) and rows["dotprod"]["dpreg_cos"] is not None
