#!/usr/bin/env python
"""Numeric parts of scripts/gpu_check.sh. Each command prints one line per case (check, case, figures, result)
and adds it to OUT/gpu_check.json (rewritten atomically); `summary` prints the table and exits 1 on a FAIL.
    gpu_check.py OUT core | sweep [RADIUS...] | steps CASE PLAIN REG | train UPDATES FP32 AMP | refused LOG RC
                     | epoch CASE CKPT REF_CKPT RC SECONDS | summary
(PLAIN, REG, FP32, AMP: dist_worker runs' NAME.log / NAME.json; GPU_CHECK_ALL_CASES=1 runs all of check 1 on CPU)
"""
import argparse
import copy
import json
import math
import os
import sys
from pathlib import Path

import torch

from fairseq_dpreg.atomic import write_json_atomic


def record(out, check, case, figures, result, **values):
    result = result if isinstance(result, str) else ("PASS" if result else "FAIL")
    data = load_json(Path(out) / "gpu_check.json") or {"rows": []}
    data["rows"].append({"check": check, "case": case, "figures": figures, "result": result, "values": values})
    write_json_atomic(Path(out) / "gpu_check.json", data)
    print(f"{check:<13} {case:<24} {figures}  {result}", flush=True)


def load_json(path):
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def log_lines(path):
    return Path(path).read_text(errors="replace").splitlines() if Path(path).exists() else []


def core_model():
    """update(mode, lam, radius) -> (G as one float64 vector, stats, radius): the regularized update (dotprod,
    central, relative) of two GELU encoder layers + a head, dropout 0, fixed random data; and the model size."""
    import torch.nn.functional as F

    from fairseq_dpreg.core import DotProductRegularizer, rounding_noise

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    layer = lambda: torch.nn.TransformerEncoderLayer(256, 4, 1024, 0.0, "gelu", batch_first=True)  # noqa: E731
    base = torch.nn.Sequential(layer(), layer(), torch.nn.Linear(256, 1024)).to(dev)
    xs, ys = torch.randn(2, 16, 32, 256, device=dev), torch.randint(0, 1024, (2, 16, 32), device=dev)
    autocast = {"amp": torch.float16, "bf16-autocast": torch.bfloat16}

    def update(mode, lam=0.1, radius=1e-2):  # -> (G as one float64 vector, stats, radius)
        model = copy.deepcopy(base).half() if mode == "fp16-weights" else copy.deepcopy(base)
        S = 2.0 ** 12 if mode in ("amp", "fp16-weights") else 1.0

        def half(i):
            def loss():
                with torch.autocast(dev, autocast.get(mode, torch.float16), enabled=mode in autocast):
                    logits = model(xs[i].to(next(model.parameters()).dtype))
                return F.cross_entropy(logits.float().reshape(-1, 1024), ys[i].reshape(-1))
            return loss

        radius = radius or 100 * rounding_noise(model.parameters())
        stats = DotProductRegularizer(model.parameters(), lam=lam, radius=radius).backward(
            half(0), half(1), backward_fn=lambda t: (t * S).backward(), grad_scale=S, scale=S)
        return torch.cat([p.grad.double().reshape(-1) for p in model.parameters()]) / S, stats, radius

    return update, sum(p.numel() for p in base.parameters()), dev


def cosine(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def core(out):
    update, size, dev = core_model()
    ref, stats, _ = update("fp32")
    record(out, "1 core", "fp32 (reference)", f"{size / 1e6:.2f}M params, "
           f"|G| {float(ref.norm()):.4g}, reg/loss {stats['reg_norm'] / stats.get('loss_grad_norm', math.inf):.3f}, "
           f"skipped {stats['skipped']}", stats["skipped"] is None and bool(torch.isfinite(ref).all()))
    # (mode, radius, cosine of G needed, cosine of the regularizing term needed or None: recorded only). amp at
    # 0.1 is what the GPU recipes run; at 0.01 fp16 compute noise divided by r blurs the term (CPU autocast:
    # term cosine 0.94 at 0.01, 0.999 at 0.1)
    cases = (("amp", 0.1, 0.99, 0.95), ("amp", 0.01, 0.99, None), ("bf16-autocast", 0.1, 0.99, None),
             ("bf16-autocast", 0.01, 0.99, None), ("fp16-weights", None, 0.95, None))
    if dev == "cpu" and os.environ.get("GPU_CHECK_ALL_CASES") != "1":
        for mode, r, _, _ in cases:
            record(out, "1 core", f"{mode} r={r or 'min'}", "SKIPPED (no CUDA)", "SKIPPED")
        return
    plain = update("fp32", lam=0.0)[0]
    for mode, r, need, need_reg in cases:
        g, stats, r = update(mode, radius=r)
        cos, rel = cosine(g, ref), float((g - ref).norm() / ref.norm())
        # the regularizing term alone (G - G at lam 0) against fp32's at r = 0.01: with relative weighting
        # it is a tenth of G, so the cosine of G barely sees it
        d, d_ref = g - update(mode, lam=0.0, radius=r)[0], ref - plain
        reg_cos = cosine(d, d_ref)
        record(out, "1 core", f"{mode} r={r:.3g}", f"rel err {rel:.2e}, cos {cos:.5f} (> {need}), reg-term cos "
               f"{reg_cos:.4f}{f' (> {need_reg})' if need_reg else ''}, skipped {stats['skipped']}",
               cos > need and (need_reg is None or reg_cos > need_reg) and stats["skipped"] is None,
               rel_err=rel, cos=cos, reg_cos=reg_cos, radius=r)


def sweep(out, *radii):
    """The regularizing term's cosine with fp32's at radius 0.001, per precision and radius (README table)."""
    update, _, _ = core_model()
    radii = [float(r) for r in radii] or [0.01, 0.03, 0.1, 0.3, 1.0]
    term = lambda mode, r: update(mode, radius=r)[0] - update(mode, lam=0.0, radius=r)[0]  # noqa: E731
    ref = term("fp32", 1e-3)
    for mode in ("fp32", "amp", "bf16-autocast"):
        cos = {r: cosine(term(mode, r), ref) for r in radii}
        record(out, "radius sweep", mode, " ".join(f"r={r:g}: {c:.4f}" for r, c in cos.items()), "INFO",
               reg_cos={str(r): c for r, c in cos.items()})


def steps(out, case, plain, reg):
    plain, reg = load_json(plain + ".json").get("steps"), load_json(reg + ".json")
    got, scales = reg.get("steps"), [s for _, s in plain or [] if s is not None]
    drops = sum(y < x for x, y in zip(scales, scales[1:]))
    figures = f"{len(plain or [])} calls, {reg.get('updates')} updates, scale drops {drops}, final scale " \
              f"{scales[-1] if scales else None}, regularized == plain: {got == plain}"
    record(out, "2 loss scale", case, figures, bool(plain) and got == plain and reg.get("updates") == 10
           and drops >= 2, plain=plain, regularized=got)


def train(out, updates, fp32, amp):
    final, n = {}, int(updates)
    for name, prefix in (("fp32", fp32), ("amp", amp)):
        lines, updates = log_lines(prefix + ".log"), load_json(prefix + ".json").get("updates", 0)
        recs = [json.loads(ln[ln.index("{", ln.index("train_inner")):]) for ln in lines
                if "train_inner" in ln and "{" in ln]
        final[name] = loss = float(recs[-1]["loss"]) if recs else math.nan
        cos = [float(r["dpreg_cos"]) for r in recs if r.get("dpreg_cos") is not None]
        cos = sum(cos) / len(cos) if cos else math.nan
        skipped = sum(float(r.get("dpreg_skipped") or 0) for r in recs)
        # under amp a non-finite pass is an fp16 overflow (the scaler's start-up search from 128 may take a few);
        # any other skip (runaway term, vanished perturbation) counts against the 1%
        overflows = sum("dpreg: skipping update" in ln and "non-finite" in ln for ln in lines) if name == "amp" else 0
        diff = abs(loss - final["fp32"])
        ok = updates == n and skipped - overflows <= 0.01 * n and overflows <= 0.01 * n + 8
        record(out, "3 amp vs fp32", name, f"{updates} updates, final loss {loss:.3f}, |diff| {diff:.3f}, mean cos "
               f"{cos:.4f}, skipped {skipped:.0f} (overflows {overflows})", ok and diff < 0.5, final_loss=loss,
               mean_cos=cos, skipped=skipped, overflows=overflows, updates=updates)


def refused(out, log, rc):
    lines, rc = log_lines(log), int(rc)
    said = next((ln.strip() for ln in lines if "cannot hold" in ln), "no cannot-hold message")
    record(out, "3 amp vs fp32", "--fp16 default radius", f"exit {rc}: {said[:100]}...", rc != 0
           and "cannot hold" in said and not any("train_inner" in ln for ln in lines))


def epoch(out, case, ckpt, ref, rc, seconds):
    rc, seconds = int(rc), float(seconds)
    if rc != 0 or not (Path(ckpt).exists() and Path(ref).exists()):
        why = "hung: killed after 180 s" if rc in (124, 137) else f"exit {rc} or no checkpoint"
        return record(out, "4 epoch end", case, f"{why} ({seconds:.0f} s)", False, rc=rc)
    got, ref = (torch.load(p, map_location="cpu", weights_only=False) for p in (ckpt, ref))
    n = [c["optimizer_history"][-1]["num_updates"] for c in (got, ref)]
    got, ref = got["model"], ref["model"]  # relative_difference of tests/test_distributed.py
    num = sum(float((got[k].double() - ref[k].double()).norm() ** 2) for k in ref) ** 0.5
    rel = num / sum(float(ref[k].double().norm() ** 2) for k in ref) ** 0.5
    record(out, "4 epoch end", case, f"2 ranks vs 1 process --update-freq 2: rel param diff {rel:.2e} "
           f"(<= 1e-4), updates {n[0]} vs {n[1]}, {seconds:.0f} s", rel <= 1e-4 and n[0] == n[1]
           and seconds <= 180, rel_diff=rel, seconds=seconds)


def summary(out):
    data = load_json(Path(out) / "gpu_check.json") or {"rows": []}
    data.update(device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (reduced run)",
                torch=torch.__version__, passed=bool(data["rows"]) and all(r["result"] != "FAIL" for r in data["rows"]))
    write_json_atomic(Path(out) / "gpu_check.json", data)
    print(f"\n== summary ({data['device']}, torch {data['torch']})\n{'check':<13} {'case':<24} {'result':<8} figures")
    for r in data["rows"]:
        print(f"{r['check']:<13} {r['case']:<24} {r['result']:<8} {r['figures']}")
    print("ALL CHECKS PASSED" if data["passed"] else "SOME CHECKS FAILED", f"({out}/gpu_check.json)")
    return 0 if data["passed"] else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("cmd", choices=COMMANDS)
    p.add_argument("args", nargs="*")
    a = p.parse_args()
    try:
        sys.exit(COMMANDS[a.cmd](a.out, *a.args) or 0)
    except Exception as e:  # a crash is a FAIL row of its own, then the traceback
        record(a.out, f"({a.cmd})", " ".join(a.args[:1]), f"crashed: {type(e).__name__}: {e}"[:300], False)
        raise


COMMANDS = {"core": core, "sweep": sweep, "steps": steps, "train": train, "refused": refused, "epoch": epoch, "summary": summary}
if __name__ == "__main__":
    main()
