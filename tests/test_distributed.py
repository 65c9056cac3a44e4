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


def run_ranks(data, save_dir, ddp_backend, extra, world=2, updates=("--max-update", str(UPDATES))):
    port = free_port()
    procs = []
    for rank in range(world):
        cmd = [sys.executable, WORKER, str(data), "--user-dir", "fairseq_dpreg", *TINY, *extra, "--cpu",
               *updates, "--save-dir", str(save_dir), "--dropout", "0",
               "--distributed-world-size", str(world), "--distributed-rank", str(rank),
               "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
               "--distributed-backend", "gloo", "--ddp-backend", ddp_backend]
        # one thread a rank: two ranks of two threads each on a 2-core machine run many times slower
        env = {**__import__("os").environ, "DPREG_COUNT_FILE": str(save_dir) + f".count{rank}.json",
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    try:  # a collective that one rank issues and the other does not hangs both: that is a failure here
        outs = [p.communicate(timeout=180)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        outs = [p.communicate()[0] for p in procs]
        raise AssertionError("the ranks hung (mismatched collectives?):\n" + "\n".join(o[-2000:] for o in outs))
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    counts = [json.loads(Path(str(save_dir) + f".count{r}.json").read_text()) for r in range(world)]
    return outs, counts


def single_process(data, save_dir, extra, updates=("--max-update", str(UPDATES))):
    cmd = [sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", "fairseq_dpreg", *TINY, *extra,
           "--cpu", *updates, "--save-dir", str(save_dir), "--dropout", "0", "--update-freq", "2"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def logged_updates(out):
    """(bsz, wpb, loss) of every train_inner record in a rank's output."""
    recs = [json.loads(line[line.index("{", line.index("train_inner")):]) for line in out.splitlines()
            if "train_inner" in line and "{" in line]
    return [(float(r["bsz"]), float(r["wpb"]), float(r["loss"])) for r in recs]


def params(path):
    return torch.load(path, map_location="cpu")["model"]


def relative_difference(a, b):
    num = sum(float((a[k].double() - b[k].double()).norm() ** 2) for k in b) ** 0.5
    den = sum(float(b[k].double().norm() ** 2) for k in b) ** 0.5
    return num / den


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
    assert relative_difference(dist_p, ref_p) <= 1e-5
    start = params(tmp_path / "plain" / "checkpoint_last.pt")
    assert any(not torch.equal(start[k], ref_p[k]) for k in ref_p)  # the comparison is not vacuous


@pytest.fixture(scope="module")
def odd_epoch_bin(shared_data, tmp_path_factory):
    """49 training pairs: at --batch-size 8 (--required-batch-size-multiple 1) an epoch is 7 batches, one of them
    a single example. On 2 ranks the
    4th update of each epoch gives rank 1 fairseq's dummy batch (ignore_grad), and the one-example batch
    falls back to the plain gradient on whichever rank gets it."""
    root = tmp_path_factory.mktemp("odd_epoch")
    for side in ("src", "tgt"):
        lines = (shared_data / "gigaword" / f"train.{side}").read_text(encoding="utf-8").splitlines()[:49]
        (root / f"train.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "src", "--target-lang", "tgt",
         "--trainpref", str(root / "train"), "--destdir", str(root / "bin"), "--joined-dictionary",
         "--workers", "1"], check=True, capture_output=True,
    )
    return root / "bin"


@pytest.mark.parametrize("ddp_backend", ["c10d", "legacy_ddp"])
def test_epoch_ends_with_a_dummy_batch_and_a_single_example(odd_epoch_bin, tmp_path, ddp_backend):
    """Two epochs of 7 batches on 2 ranks (each epoch ends with a dummy batch on rank 1, and one batch holds a
    single example): regularized training finishes and matches one process with --update-freq 2, as plain
    training does."""
    epochs = ("--max-epoch", "2", "--batch-size", "8", "--required-batch-size-multiple", "1", "--max-tokens", "100000")
    sgd = ["--lr", "0.05", "--optimizer"]
    runs = {"reg": ["--task", "translation_dpreg", *sgd, "dpreg_sgd", "--dpreg-lambda", "0.1", "--dpreg-radius",
                    "0.01"],
            "plain": ["--task", "translation", *sgd, "sgd"]}
    for name, extra in runs.items():
        outs, counts = run_ranks(odd_epoch_bin, tmp_path / f"{name}_dist", ddp_backend, extra, updates=epochs)
        assert all(c["updates"] == 8 for c in counts), counts
        single = single_process(odd_epoch_bin, tmp_path / f"{name}_single", extra, updates=epochs)
        # what rank 0 logs for each update is what one process logs for the same examples (a misaligned
        # statistics all-reduce once added unrelated values: bsz 74 for 16 sentences)
        dist_log, ref_log = logged_updates(outs[0]), logged_updates(single)
        assert len(dist_log) == len(ref_log) == 8 and sum(b for b, _, _ in dist_log) == 2 * 49
        for (b, w, loss), (rb, rw, rloss) in zip(dist_log, ref_log):
            assert (b, w) == (rb, rw) and abs(loss - rloss) < 2e-3, (dist_log, ref_log)
        got = params(tmp_path / f"{name}_dist" / "checkpoint_last.pt")
        ref = params(tmp_path / f"{name}_single" / "checkpoint_last.pt")
        assert relative_difference(got, ref) <= 1e-4, (name, relative_difference(got, ref))
        if name == "reg":
            assert "cannot be split" in "".join(outs)  # the single-example batch took the fallback
