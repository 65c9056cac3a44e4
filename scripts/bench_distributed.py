#!/usr/bin/env python
"""Two-process benchmark: per-update time and gradient bytes all-reduced per update, plain vs regularized.

Runs fairseq-train with 2 CPU ranks (gloo over 127.0.0.1) for --ddp-backend c10d and legacy_ddp on the
project's own generated headline corpus, through scripts/dist_worker.py, which times every update and counts
the gradient all-reduces (DDP buckets and Python-level all-reduces of gradient-sized tensors).
Usage: python scripts/bench_distributed.py [--updates 30] [--out bench_out/bench_distributed.json]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fairseq_dpreg.atomic import write_json_atomic  # noqa: E402

MODEL = ("--arch transformer --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 128 --decoder-embed-dim 128 "
         "--encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 --encoder-attention-heads 4 "
         "--decoder-attention-heads 4 --share-all-embeddings --dropout 0.1 --activation-fn gelu "
         "--criterion label_smoothed_cross_entropy --label-smoothing 0.1 --lr 5e-4 --max-tokens 2048 "
         "--log-format json --log-interval 10 --seed 1 --num-workers 0 --disable-validation --no-save "
         "--cpu --distributed-backend gloo --distributed-no-spawn").split()
ALGOS = {
    "plain": ["--task", "translation", "--optimizer", "adam"],
    "dotprod": ["--task", "translation_dpreg", "--optimizer", "dpreg_adam", "--dpreg-lambda", "0.1"],
}


def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(data, backend, algo, updates, work):
    p = port()
    procs, files = [], []
    for rank in range(2):
        out = Path(work) / f"{backend}-{algo}-{rank}.json"
        files.append(out)
        cmd = [sys.executable, str(REPO / "scripts" / "dist_worker.py"), str(data), "--user-dir",
               str(REPO / "fairseq_dpreg"), *MODEL, *ALGOS[algo], "--max-update", str(updates),
               "--ddp-backend", backend, "--distributed-world-size", "2", "--distributed-rank", str(rank),
               "--distributed-init-method", f"tcp://127.0.0.1:{p}"]
        env = dict(os.environ, DPREG_COUNT_FILE=str(out), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    for proc in procs:
        log = proc.communicate()[0]
        if proc.returncode:
            sys.exit(f"{backend}/{algo} failed:\n{log[-3000:]}")
    counts = [json.loads(f.read_text()) for f in files]
    steps = counts[0]["step_seconds"][3:]  # the first updates warm up
    return {"s_per_update": statistics.median(steps), "allreduce_calls_per_update": counts[0]["calls"] / updates,
            "gradient_bytes_per_update": 4 * counts[0]["numel"] / updates}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=30)
    ap.add_argument("--out", default="bench_out/bench_distributed.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        raw, data = Path(work) / "raw", Path(work) / "bin"
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_corpus.py"), str(raw)], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "src", "--target-lang",
                        "tgt", "--trainpref", str(raw / "train"), "--destdir", str(data), "--joined-dictionary",
                        "--workers", "1"], check=True, capture_output=True)
        report = {}
        print(f"# 2 CPU ranks (gloo, 1 thread each), {args.updates} updates, median s/update after 3 warm-up")
        print(f"{'backend':10s} {'algo':8s} {'s/update':>9s} {'x plain':>8s} {'all-reduces':>12s} {'MB/update':>10s}")
        for backend in ("c10d", "legacy_ddp"):
            for algo in ("plain", "dotprod"):
                r = report[f"{backend}/{algo}"] = run(data, backend, algo, args.updates, work)
                base = report[f"{backend}/plain"]["s_per_update"]
                print(f"{backend:10s} {algo:8s} {r['s_per_update']:9.3f} {r['s_per_update'] / base:8.2f} "
                      f"{r['allreduce_calls_per_update']:12.1f} {r['gradient_bytes_per_update'] / 1e6:10.2f}")
    out = Path(args.out)
    write_json_atomic(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
