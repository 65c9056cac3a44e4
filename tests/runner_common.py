"""What the runner's tests share: the command line, its environment, the event log, the grid that parses, and a
small RTE set prepared with the SuperGLUE recipe (the `rte` fixture) (tests/test_experiment*.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SCRIPT = REPO / "scripts" / "experiment.py"
GOOD = {"pipeline": "superglue", "recipe": "cpu-tiny", "data": "d", "metric": "accuracy", "seeds": [1, 2],
        "conditions": [{"name": "plain", "algo": "plain"}, {"name": "dp", "algo": "dotprod"}]}


def env():
    return dict(os.environ, PYTHON=PY)


def events(out):
    path = out / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def starts(evts, cond, seed):
    return sum(1 for e in evts if e["event"] == "start" and e["condition"] == cond and e["seed"] == seed)


@pytest.fixture(scope="module")
def rte(shared_data, tmp_path_factory):
    """60 RTE dev records as train.jsonl and 20 as val.jsonl in raw/, prepared with SentencePiece (cpu-tiny) into
    bin/ (imported by the test files that use it: a fixture for each module)."""
    root = tmp_path_factory.mktemp("rte")
    lines = (shared_data / "superglue" / "RTE" / "val.jsonl").read_text(encoding="utf-8").splitlines()
    (root / "raw").mkdir()
    (root / "raw" / "train.jsonl").write_text("\n".join(lines[:60]) + "\n", encoding="utf-8")
    (root / "raw" / "val.jsonl").write_text("\n".join(lines[60:80]) + "\n", encoding="utf-8")
    subprocess.run(["bash", str(REPO / "examples" / "superglue" / "prepare.sh"), "RTE", str(root / "raw"),
                    str(root / "bin"), "--bpe", "spm", "--vocab-size", "1000"], check=True, env=env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return root
