#!/usr/bin/env python
"""`make demo`: the Gigaword pipeline end to end on the project's own small headline corpus.

    .venv/bin/python scripts/demo.py [--out demo_out] [--max-update 400] [--threads 1]

Stages: make the corpus (scripts/make_demo_corpus.py) -> examples/gigaword/prepare.sh -> train.sh twice
(plain, then dotprod: the gradient dot-product regularizer) with a reduced cpu-small recipe -> evaluate.sh on
the test split -> a side-by-side table (ROUGE-1/2/L with 95% CIs, best valid loss, mean dpreg_cos over the last
updates) and demo_out/demo.png (training loss and gradient cosine against updates).
About 10 minutes on 2 CPU cores. Logs of every stage go to demo_out/logs/.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "gigaword"
RUNS = ("plain", "dotprod")

# The reduced cpu-small recipe: later flags override train.sh's cpu-small ones.
DEMO_TRAIN_FLAGS = [
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "128", "--decoder-embed-dim", "128",
    "--encoder-ffn-embed-dim", "512", "--decoder-ffn-embed-dim", "512",
    "--max-source-positions", "128", "--max-target-positions", "128",
    "--max-tokens", "2048", "--lr", "2e-3", "--warmup-updates", "100",
    "--log-interval", "10", "--validate-interval-updates", "100", "--save-interval-updates", "0",
]
DEMO_GEN_FLAGS = ["--beam", "4", "--max-len-b", "30", "--batch-size", "100"]
LAST_UPDATES = 100  # dpreg_cos is averaged over the train_inner logs of the last this many updates


def banner(text):
    print(f"\n{'=' * 78}\n== {text}\n{'=' * 78}", flush=True)


class StageError(Exception):
    pass


def run(cmd, log_path, env, show):
    """Run ``cmd``; every output line goes to ``log_path``, and ``show(line)`` decides what is printed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail = deque(maxlen=40)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, cwd=REPO, text=True, bufsize=1, errors="replace")
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            msg = show(line.rstrip("\n"))
            if msg:
                print(msg, flush=True)
        rc = proc.wait()
    if rc != 0:
        print("\n".join("   | " + x for x in tail), file=sys.stderr)
        raise StageError(f"{Path(cmd[1]).name if len(cmd) > 1 else cmd[0]} failed with exit status {rc} "
                         f"(full log: {log_path})")


def show_script(line):
    """prepare/evaluate: their own messages, not fairseq's INFO lines."""
    if line.startswith(("==", "[", "{", "error", "prepare.sh", "evaluate.sh", "train.sh")):
        return "   " + (line if len(line) < 300 else line[:300] + " ...")
    return None


def fairseq_json(line, tag):
    """The JSON payload of a fairseq log line ``... | tag | {...}``, or None."""
    marker = f"| {tag} | "
    i = line.find(marker)
    if i < 0:
        return None
    try:
        return json.loads(line[i + len(marker):])
    except json.JSONDecodeError:
        return None


def show_train(name, max_update, t0):
    def show(line):
        rec = fairseq_json(line, "train_inner")
        if rec is not None:
            cos = f"  dpreg_cos {float(rec['dpreg_cos']):+.3f}" if "dpreg_cos" in rec else ""
            return (f"   [{name}] update {int(rec['num_updates']):>4}/{max_update}  loss {float(rec['loss']):6.3f}"
                    f"{cos}  ({time.time() - t0:4.0f} s)")
        rec = fairseq_json(line, "valid")
        if rec is not None:
            return f"   [{name}] valid loss {float(rec['valid_loss']):.3f} at update {rec.get('valid_num_updates')}"
        if "Traceback" in line or "Error" in line or "error:" in line or "WARNING" in line:
            return "   " + line
        return None
    return show


def read_train_log(path):
    """train_inner and valid records of a fairseq --log-format json --log-file log (duplicates dropped)."""
    inner, valid = {}, {}
    if not path.is_file():
        return [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        i = line.find("{")
        if i < 0:
            continue
        try:
            rec = json.loads(line[i:])
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        if "valid_loss" in rec and "valid_num_updates" in rec:
            valid[int(rec["valid_num_updates"])] = rec
        elif "loss" in rec and "num_updates" in rec and "train_loss" not in rec:
            inner[int(rec["num_updates"])] = rec
    return [inner[k] for k in sorted(inner)], [valid[k] for k in sorted(valid)]


def summarize_run(save_dir):
    inner, valid = read_train_log(save_dir / "train.log")
    out = {"inner": inner, "valid": valid}
    out["best_valid_loss"] = min((float(v["valid_loss"]) for v in valid), default=None)
    last = inner[-1]["num_updates"] if inner else None
    cos = [float(r["dpreg_cos"]) for r in inner
           if "dpreg_cos" in r and last is not None and int(r["num_updates"]) > int(last) - LAST_UPDATES]
    out["mean_cos"] = sum(cos) / len(cos) if cos else None
    rouge = save_dir / "rouge.test.json"
    out["rouge"] = json.loads(rouge.read_text()) if rouge.is_file() else None
    return out


def table(results, seconds):
    def rouge_cell(r, m):
        if r is None:
            return "n/a"
        s = r[m]
        return f"{s['f']:5.2f} [{s['ci_low']:5.2f}, {s['ci_high']:5.2f}]"

    head = (f"{'run':<9} {'ROUGE-1 [95% CI]':>21} {'ROUGE-2 [95% CI]':>21} {'ROUGE-L [95% CI]':>21} "
            f"{'best valid loss':>15} {'mean dpreg_cos':>14} {'train s':>8}")
    lines = [head, "-" * len(head)]
    for name, res in results.items():
        if res is None:
            lines.append(f"{name:<9} {'not run (see above)':>21}")
            continue
        bvl = f"{res['best_valid_loss']:.3f}" if res["best_valid_loss"] is not None else "n/a"
        cos = f"{res['mean_cos']:+.3f}" if res["mean_cos"] is not None else "-"
        lines.append(f"{name:<9} {rouge_cell(res['rouge'], 'rouge1'):>21} {rouge_cell(res['rouge'], 'rouge2'):>21} "
                     f"{rouge_cell(res['rouge'], 'rougeL'):>21} {bvl:>15} {cos:>14} {seconds.get(name, 0):>8.0f}")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, res in results.items():
        if not res or not res["inner"]:
            continue
        x = [int(r["num_updates"]) for r in res["inner"]]
        line, = ax1.plot(x, [float(r["loss"]) for r in res["inner"]], label=f"{name} train")
        if res["valid"]:
            ax1.plot([int(v["valid_num_updates"]) for v in res["valid"]], [float(v["valid_loss"]) for v in res["valid"]],
                     "o--", color=line.get_color(), label=f"{name} valid")
        cos = [(int(r["num_updates"]), float(r["dpreg_cos"])) for r in res["inner"] if "dpreg_cos" in r]
        if cos:
            ax2.plot([c[0] for c in cos], [c[1] for c in cos], color=line.get_color(), label=name)
        else:
            ax2.plot([], [], color=line.get_color(), label=f"{name} (not measured: plain training)")
    ax1.set_xlabel("update")
    ax1.set_ylabel("loss (label-smoothed, base 2)")
    ax1.set_title("training loss")
    ax1.legend()
    ax2.axhline(0.0, color="grey", lw=0.5)
    ax2.set_xlabel("update")
    ax2.set_ylabel("cos(g1, g2)")
    ax2.set_title("gradient cosine of the two half-batches (dpreg_cos)")
    ax2.legend()
    fig.tight_layout()
    tmp = path.with_name("." + path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    plt.close(fig)


def plugin_available(env):
    """True when fairseq knows --task translation_dpreg and --optimizer dpreg_adam (the plugin is there)."""
    code = ("import argparse, sys\n"
            "from fairseq import optim, tasks, utils\n"
            f"utils.import_user_module(argparse.Namespace(user_dir={str(REPO / 'fairseq_dpreg')!r}))\n"
            "ok = 'translation_dpreg' in tasks.TASK_REGISTRY and 'dpreg_adam' in optim.OPTIMIZER_REGISTRY\n"
            "sys.exit(0 if ok else 3)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["translation_dpreg / dpreg_adam not registered"])[-1]
        return False, reason
    return True, ""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "demo_out"))
    p.add_argument("--max-update", type=int, default=400, help="updates of each training run (default 400)")
    p.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "1"),
                   help="torch threads of each fairseq process (default: $OMP_NUM_THREADS or 1: one thread "
                        "is faster than two for this tiny model when the cores are shared)")
    p.add_argument("--n-train", type=int, default=6000)
    a = p.parse_args(argv)

    t_start = time.time()
    out = Path(a.out).resolve()
    for sub in ("corpus", "data-bin", "logs", *RUNS):  # fairseq would resume from an old checkpoint_last.pt
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               PYTHONUNBUFFERED="1")
    bash = shutil.which("bash") or "/bin/bash"
    logs = out / "logs"
    seconds = {}

    try:
        banner("1/5 demo corpus (scripts/make_demo_corpus.py)")
        run([sys.executable, REPO / "scripts" / "make_demo_corpus.py", out / "corpus", "--n-train", a.n_train],
            logs / "corpus.log", env, lambda x: "   " + x)

        banner("2/5 prepare: validate, SentencePiece, fairseq-preprocess (examples/gigaword/prepare.sh)")
        run([bash, EXAMPLES / "prepare.sh", out / "corpus", out / "data-bin", "--vocab-size", "1000",
             "--workers", "2", "--force"], logs / "prepare.log", env, show_script)

        results = {}
        ok, reason = plugin_available(env)
        for i, name in enumerate(RUNS):
            banner(f"{3 + i}/5 train {name}: reduced cpu-small, {a.max_update} updates (examples/gigaword/train.sh)")
            if name != "plain" and not ok:
                print(f"   SKIPPED: the dpreg plugin is not usable here ({reason}).\n"
                      f"   `--task translation_dpreg --optimizer dpreg_adam` need fairseq_dpreg/glue; "
                      f"the table shows the plain run only.", flush=True)
                results[name] = None
                continue
            save = out / name
            t0 = time.time()
            run([bash, EXAMPLES / "train.sh", "cpu-small", name, out / "data-bin", save, *DEMO_TRAIN_FLAGS,
                 "--max-update", a.max_update], logs / f"train.{name}.log", env,
                show_train(name, a.max_update, t0))
            seconds[name] = time.time() - t0
            print(f"   [{name}] evaluating on the test split (examples/gigaword/evaluate.sh)", flush=True)
            run([bash, EXAMPLES / "evaluate.sh", out / "data-bin", save / "checkpoint_best.pt",
                 out / "data-bin" / "raw" / "test.src", out / "data-bin" / "raw" / "test.tgt", *DEMO_GEN_FLAGS],
                logs / f"evaluate.{name}.log", env, show_script)
            results[name] = summarize_run(save)

        banner("5/5 results (test split, 300 headlines)")
        print(table(results, seconds))
        conv = next((r["rouge"]["convention"] for r in results.values() if r and r["rouge"]), "")
        print(f"\nROUGE: {conv}.\nmean dpreg_cos: over the last {LAST_UPDATES} updates; "
              f"'-' for plain training (not measured).")
        for name, res in results.items():
            if res:
                hyps = (out / name / "hyps.test.txt").read_text(encoding="utf-8").splitlines()[:3]
                print(f"\nfirst test headlines, {name}:\n" + "\n".join("   " + h for h in hyps))
        plot(results, out / "demo.png")
        summary = {n: (None if r is None else {k: r[k] for k in ("best_valid_loss", "mean_cos", "rouge")})
                   for n, r in results.items()}
        (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\nwrote {out / 'demo.png'} and {out / 'results.json'}; "
              f"demo took {time.time() - t_start:.0f} s")
    except StageError as err:
        print(f"\ndemo failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
