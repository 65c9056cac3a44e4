"""Two CPU workers (gloo over 127.0.0.1): c10d and legacy_ddp, against a single-process reference."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_fairseq_glue import TINY, gigaword_bin  # noqa: F401  (fixture)

import fairseq_dpreg.glue  # noqa: F401,E402

WORKER = str(Path(__file__).resolve().parents[1] / "scripts" / "dist_worker.py")
UPDATES = 12


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(data, save_dir, ddp_backend, extra, world=2):
    port = free_port()
    procs = []
    for rank in range(world):
        cmd = [sys.executable, WORKER, str(data), "--user-dir", "fairseq_dpreg", *TINY, *extra, "--cpu",
               "--max-update", str(UPDATES), "--save-dir", str(save_dir), "--dropout", "0",
               "--distributed-world-size", str(world), "--distributed-rank", str(rank),
               "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
               "--distributed-backend", "gloo", "--ddp-backend", ddp_backend]
        env = {**__import__("os").environ, "DPREG_COUNT_FILE": str(save_dir) + f".count{rank}.json"}
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    counts = [json.loads(Path(str(save_dir) + f".count{r}.json").read_text()) for r in range(world)]
    return outs, counts


def single_process(data, save_dir, extra):
    cmd = [sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", "fairseq_dpreg", *TINY, *extra,
           "--cpu", "--max-update", str(UPDATES), "--save-dir", str(save_dir), "--dropout", "0",
           "--update-freq", "2"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]


def params(path):
    return torch.load(path, map_location="cpu")["model"]


@pytest.mark.parametrize("ddp_backend", ["c10d", "legacy_ddp"])
def test_two_workers_match_single_process_and_all_reduce_once(gigaword_bin, tmp_path, ddp_backend):  # noqa: F811
    # SGD: Adam's first steps are +-lr whatever the gradient's size, which turns float32 summation-order
    # noise (2 workers vs 1 process) into parameter differences of its own; SGD shows the gradient as it is
    sgd = ["--lr", "0.5"]
    reg = ["--task", "translation_dpreg", "--optimizer", "dpreg_sgd", "--dpreg-lambda", "0.1", "--dpreg-radius",
           "0.01", *sgd]
    _, reg_counts = run_ranks(gigaword_bin, tmp_path / "reg", ddp_backend, reg)
    _, plain_counts = run_ranks(gigaword_bin, tmp_path / "plain", ddp_backend,
                                ["--task", "translation", "--optimizer", "sgd", *sgd])
    single_process(gigaword_bin, tmp_path / "single", reg)
    # one gradient all-reduce per update, the same traffic as plain training
    for counts in (reg_counts, plain_counts):
        assert all(c["updates"] == UPDATES for c in counts)
    assert reg_counts[0]["calls"] == plain_counts[0]["calls"]
    assert reg_counts[0]["numel"] == plain_counts[0]["numel"]
    assert reg_counts[0]["calls"] % UPDATES == 0 and reg_counts[0]["calls"] // UPDATES >= 1
    # 2 workers (each its own sub-batch) == 1 process with --update-freq 2 on the same two sub-batches;
    # fairseq checked the workers' gradient norms for consistency at every update (it raises otherwise)
    dist_p, ref_p = params(tmp_path / "reg" / "checkpoint_last.pt"), params(tmp_path / "single" / "checkpoint_last.pt")
    num = sum(float((dist_p[k].double() - ref_p[k].double()).norm() ** 2) for k in ref_p) ** 0.5
    den = sum(float(ref_p[k].double().norm() ** 2) for k in ref_p) ** 0.5
    assert num / den <= 1e-5, num / den
    start = params(tmp_path / "plain" / "checkpoint_last.pt")
    assert any(not torch.equal(start[k], ref_p[k]) for k in ref_p)  # the comparison is not vacuous
