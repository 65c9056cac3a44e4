#!/usr/bin/env python
"""Cost and accuracy of the regularizer, measured side by side on the same batches in one run.

For a small and a mid-sized transformer language model (GELU, dropout 0.1, Adam) and, with --models, a
classifier of MiniLM's shape (6 layers, d=384, 12 heads, a 30,522-token embedding: 22.7M parameters, half of
them the embedding) on batches of 16 inputs of WiC's length (26 tokens) or of about an RTE batch's (128,
padded), per-update wall time and peak
memory of: plain (full batch), the bare three half-batch forward/backward passes (the floor of any first-order
implementation), dotprod central / forward, reptile, fomaml, the exact alternative (double backward through the
math SDPA backend) and lazy regularization (--dpreg-interval 4, amortized). Then the relative error of the
finite-difference estimate against the exact Hessian-vector product for several radii, forward vs central.

Times are measured in this process, all variants interleaved round by round on the same batches. Peak memory
on CPU is measured in a child process per variant in which large allocations are served by mmap
(MALLOC_MMAP_THRESHOLD_), so that the resident set follows live tensors: the peak resident set over one update
(VmHWM after a reset through /proc/self/clear_refs) minus the resident set before it. (mmap'd allocations make
every temporary tensor fault in fresh pages, which would distort times: hence the separate processes.)
Usage: python scripts/bench.py [--quick] [--models small,mid,minilm-wic,minilm-rte]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import subprocess  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fairseq_dpreg import DotProductRegularizer  # noqa: E402
from fairseq_dpreg.atomic import write_json_atomic  # noqa: E402

class LM(nn.Module):
    """A causal language model (``classes=None``) or a sentence classifier reading position 0 (BERT's shape:
    learned positions, bidirectional attention, a tanh pooler), GELU, dropout 0.1."""

    def __init__(self, layers, dim, heads=4, vocab=8000, classes=None, dropout=0.1):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, activation="gelu", batch_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.classes = classes
        if classes is None:
            self.out = nn.Linear(dim, vocab)
        else:
            self.pos = nn.Embedding(512, dim)
            self.out = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, classes))

    def forward(self, x):
        if self.classes is not None:
            return self.out(self.body(self.emb(x) + self.pos.weight[: x.size(1)])[:, 0])
        mask = nn.Transformer.generate_square_subsequent_mask(x.size(1))
        return self.out(self.body(self.emb(x), mask=mask, is_causal=True))


def loss_fn(model, batch):
    x, y = batch
    logits = model(x)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def peak_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


class Bench:
    def __init__(self, layers, dim, batch, seqlen, heads=4, vocab=8000, classes=None, dtype=torch.float32, seed=0):
        torch.manual_seed(seed)
        self.model = LM(layers, dim, heads, vocab, classes).to(dtype)
        self.params = list(self.model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-4)
        data = torch.randint(0, vocab, (batch, seqlen + 1))
        if classes is None:
            x, y = data[:, :-1], data[:, 1:]
        else:
            x, y = data[:, :-1], torch.randint(0, classes, (batch,))
        self.full = (x, y)
        h = batch // 2
        self.halves = ((x[:h], y[:h]), (x[h:], y[h:]))
        self.n_params = sum(p.numel() for p in self.params)

    # one update of each kind ------------------------------------------------------------------------
    def plain(self):
        self.opt.zero_grad(set_to_none=True)
        loss_fn(self.model, self.full).backward()
        self.opt.step()

    def bare(self):
        self.opt.zero_grad(set_to_none=True)
        for half in (self.halves[0], self.halves[1], self.halves[1]):
            for p in self.params:
                p.grad = None
            loss_fn(self.model, half).backward()
        self.opt.step()

    def regularized(self, **kw):
        reg = DotProductRegularizer(self.params, **kw)

        def update():
            self.opt.zero_grad(set_to_none=True)
            reg.backward(lambda: loss_fn(self.model, self.halves[0]), lambda: loss_fn(self.model, self.halves[1]))
            self.opt.step()
        return update

    def lazy(self, k=4, **kw):
        reg = DotProductRegularizer(self.params, **kw)
        count = [0]

        def update():
            count[0] += 1
            if count[0] % k:
                return self.plain()
            self.opt.zero_grad(set_to_none=True)
            reg.backward(lambda: loss_fn(self.model, self.halves[0]), lambda: loss_fn(self.model, self.halves[1]),
                         reg_scale=k)
            self.opt.step()
        return update

    def exact_G(self, lam=0.1):
        """Absolute-weighted G with H2 g1 from double backward (math SDPA backend), same dropout masks."""
        with sdpa_kernel(SDPBackend.MATH):
            g1 = torch.autograd.grad(loss_fn(self.model, self.halves[0]), self.params)
            state = torch.get_rng_state()
            g2 = torch.autograd.grad(loss_fn(self.model, self.halves[1]), self.params, create_graph=True)
            hvp = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g2, g1)), self.params)
        return g1, [g.detach() for g in g2], hvp, state

    def exact(self, lam=0.1):
        def update():
            self.opt.zero_grad(set_to_none=True)
            g1, g2, hvp, _ = self.exact_G(lam)
            for p, a, b, h in zip(self.params, g1, g2, hvp):
                p.grad = (a + b) / 2 - 2 * lam * h
            self.opt.step()
        return update


def variants(b):
    return [
        ("plain", b.plain),
        ("bare 3 half passes", b.bare),
        ("dotprod central", b.regularized(lam=0.1, radius=1e-2, fd="central")),
        ("dotprod forward", b.regularized(lam=0.1, radius=1e-2, fd="forward")),
        ("reptile", b.regularized(algorithm="reptile", alpha=1e-3)),
        ("fomaml", b.regularized(algorithm="fomaml", alpha=1e-3)),
        ("exact (double backward)", b.exact()),
        ("dotprod central, interval 4", b.lazy(4, lam=0.1, radius=1e-2)),
    ]


# name: (layers, dim, batch, seqlen, heads, vocab, classes); classes=None: a language model
MODELS = {"small": (2, 128, 32, 64, 4, 8000, None), "mid": (3, 256, 32, 64, 4, 8000, None),
          "minilm-wic": (6, 384, 16, 26, 12, 30522, 2), "minilm-rte": (6, 384, 16, 128, 12, 30522, 2)}


def peak_of(model, index):
    """Peak extra resident memory of one update of variant `index`, measured in a child process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, __file__, "--memory-of", model, str(index)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def cost_table(model, repeats):
    b = Bench(*MODELS[model])
    vs = variants(b)
    results = {label: [] for label, _ in vs}
    for _, fn in vs:  # warm-up
        fn()
        fn()
    for _ in range(repeats):  # interleaved round by round so that machine drift hits every variant alike
        for label, fn in vs:
            calls = 4 if "interval 4" in label else 1  # lazy regularization: amortized over its 4-update cycle
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            results[label].append((time.perf_counter() - t0) / calls)
    peaks = {label: peak_of(model, i) for i, (label, _) in enumerate(vs)}
    base_t, bare_t = statistics.median(results["plain"]), statistics.median(results["bare 3 half passes"])
    param_mb = b.n_params * 4 / 2**20
    layers, dim, batch, seqlen, _, vocab, classes = MODELS[model]
    kind = "language model" if classes is None else f"{classes}-way classifier"
    print(f"\n## {model} ({kind}, {layers} layers, d={dim}, vocab {vocab}): {b.n_params / 1e6:.2f}M parameters "
          f"({param_mb:.1f} MiB fp32), batch {batch}x{seqlen}, median of {repeats}")
    print(f"{'variant':32s} {'s/update':>9s} {'x plain':>8s} {'x bare':>7s} {'peak MiB':>9s} {'vs plain MiB':>13s}")
    rows = {}
    for label, _ in vs:
        t, m = statistics.median(results[label]), peaks[label]
        rows[label] = {"seconds": t, "x_plain": t / base_t, "x_bare": t / bare_t, "peak_mib": m,
                       "extra_mib_vs_plain": m - peaks["plain"]}
        print(f"{label:32s} {t:9.4f} {t / base_t:8.2f} {t / bare_t:7.2f} {m:9.1f} {m - peaks['plain']:+13.1f}")
    print(f"(one fp32 copy of the parameters = {param_mb:.1f} MiB; plugin overhead beyond the bare passes: "
          f"{100 * (rows['dotprod central']['x_bare'] - 1):+.1f}% central, "
          f"{100 * (rows['dotprod forward']['x_bare'] - 1):+.1f}% forward)")
    return {"params": b.n_params, "param_mib": param_mb, "rows": rows}


def memory_of(model, index):
    b = Bench(*MODELS[model])
    label, fn = variants(b)[index]
    fn()
    fn()  # optimizer state allocated, caches warm
    peak = 0.0
    for _ in range(4):  # a whole cycle of the lazy variant
        before = rss_kb()
        reset_peak()
        fn()
        peak = max(peak, (peak_kb() - before) / 1024.0)
    print(peak)


def fd_error_table(layers, dim, batch, seqlen):
    out = {}
    print("\n## finite-difference error vs exact H2 g1 (relative norm of the G difference, lambda=0.1 absolute)")
    print(f"{'dtype':8s} {'radius':>8s} {'forward':>10s} {'central':>10s}")
    for dtype in (torch.float64, torch.float32):
        b = Bench(layers, dim, batch, seqlen, dtype=dtype)
        torch.manual_seed(7)
        g1, g2, hvp, _ = b.exact_G()
        ref = flat([(a + c) / 2 - 0.2 * h for a, c, h in zip(g1, g2, hvp)])
        for r in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5):
            errs = {}
            for fd in ("forward", "central"):
                for p in b.params:
                    p.grad = None
                reg = DotProductRegularizer(b.params, lam=0.1, radius=r, fd=fd, weighting="absolute",
                                            max_reg_ratio=None)
                torch.manual_seed(7)
                with sdpa_kernel(SDPBackend.MATH):
                    st = reg.backward(lambda: loss_fn(b.model, b.halves[0]), lambda: loss_fn(b.model, b.halves[1]))
                got = flat([p.grad for p in b.params]) if st["skipped"] is None else None
                errs[fd] = float((got - ref).norm() / ref.norm()) if got is not None else float("nan")
            key = f"{str(dtype).split('.')[-1]} r={r:g}"
            out[key] = errs
            print(f"{str(dtype).split('.')[-1]:8s} {r:8.0e} {errs['forward']:10.2e} {errs['central']:10.2e}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, small model only (a smoke run)")
    ap.add_argument("--models", default="small,mid",
                    help=f"comma-separated, of {', '.join(MODELS)} (default small,mid)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="bench_out/bench.json")
    ap.add_argument("--memory-of", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_of:
        return memory_of(args.memory_of[0], int(args.memory_of[1]))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores; times are medians, same batches for every variant")
    repeats = 2 if args.quick else args.repeats
    names = ["small"] if args.quick else args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    report = {name: cost_table(name, repeats) for name in names}
    report["fd_error"] = fd_error_table(1, 32, 8, 12)
    out = Path(args.out)
    write_json_atomic(out, report)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
