"""The pure-PyTorch core against an independent exact reference (double backward, math SDPA backend)."""
import copy

import pytest
import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from fairseq_dpreg import DotProductRegularizer, core


class TinyTransformer(nn.Module):
    """Smooth (GELU) encoder layer with dropout everywhere, so masks matter and the Hessian exists."""

    def __init__(self, dim=8, vocab=11, dropout=0.2):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.layer = nn.TransformerEncoderLayer(dim, 2, 16, dropout=dropout, activation="gelu", batch_first=True)
        self.out = nn.Linear(dim, vocab)

    def forward(self, x):
        return self.out(self.layer(self.emb(x)))


def make_problem(dtype, seed=0):
    torch.manual_seed(seed)
    model = TinyTransformer().to(dtype)
    x = torch.randint(0, 11, (8, 5))
    y = torch.randint(0, 11, (8, 5))
    halves = (x[:5], y[:5]), (x[5:], y[5:])  # unequal halves: 5 and 3 sequences

    def loss_of(half):
        xb, yb = half
        return nn.functional.cross_entropy(model(xb).reshape(-1, 11), yb.reshape(-1))

    return model, halves, loss_of


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def exact_reference(model, halves, loss_of, lam, weighting, seed=123):
    """G of SPEC 1.1 with H2 g1 from double backward, the same dropout masks as the core's passes."""
    params = [p for p in model.parameters()]
    torch.manual_seed(seed)
    g1 = torch.autograd.grad(loss_of(halves[0]), params)
    l2 = loss_of(halves[1])
    g2 = torch.autograd.grad(l2, params, create_graph=True)
    hvp = torch.autograd.grad(sum((a * b.detach()).sum() for a, b in zip(g2, g1)), params)
    g1, g2, h = flat(g1), flat([g.detach() for g in g2]), flat(hvp)
    n1, n2 = 5 * 5, 3 * 5
    g_loss = (n1 * g1 + n2 * g2) / (n1 + n2)
    if weighting == "absolute":
        G = g_loss - 2 * lam * h
    else:
        G = g_loss - lam * g_loss.norm() * h / h.norm()
    return G, g1, g2


def run_core(model, halves, loss_of, seed=123, **kw):
    reg = DotProductRegularizer(model.parameters(), **kw)
    torch.manual_seed(seed)
    stats = reg.backward(lambda: loss_of(halves[0]), lambda: loss_of(halves[1]), weights=(25, 15))
    G = flat([p.grad for p in model.parameters()])
    return G, stats


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    "dtype,fd,radius,weighting,lam,tol",
    [
        (torch.float64, "central", 1e-4, "absolute", 0.5, 1e-6),
        (torch.float64, "forward", 1e-5, "absolute", 0.5, 1e-4),
        (torch.float32, "central", 1e-2, "absolute", 0.5, 2e-3),
        (torch.float64, "central", 1e-4, "relative", 0.3, 1e-6),
        (torch.float32, "central", 1e-2, "relative", 0.3, 2e-3),
    ],
)
def test_dotprod_matches_double_backward(dtype, fd, radius, weighting, lam, tol):
    with sdpa_kernel(SDPBackend.MATH):
        model, halves, loss_of = make_problem(dtype)
        before = copy.deepcopy(model.state_dict())
        G, stats = run_core(model, halves, loss_of, lam=lam, radius=radius, fd=fd, weighting=weighting)
        ref, g1, g2 = exact_reference(model, halves, loss_of, lam, weighting)
    assert stats["skipped"] is None
    assert rel_err(G, ref) <= tol, (rel_err(G, ref), tol)
    # the regularizing term is not negligible, so this is a real test of the Hessian-vector product
    g_loss = (25 * g1 + 15 * g2) / 40
    assert rel_err(ref, g_loss) > 100 * tol
    # statistics
    assert stats["g1_norm"] == pytest.approx(float(g1.norm()), rel=1e-5)
    assert stats["g2_norm"] == pytest.approx(float(g2.norm()), rel=10 * tol)
    assert stats["cos"] == pytest.approx(float(g1 @ g2 / (g1.norm() * g2.norm())), rel=10 * tol, abs=10 * tol)
    assert stats["reg_norm"] == pytest.approx(float((ref - g_loss).norm()), rel=10 * tol)
    assert stats["reg_ratio"] == pytest.approx(float((ref - g_loss).norm() / g_loss.norm()), rel=10 * tol)
    if weighting == "relative":  # the logged ratio is beta itself
        assert stats["reg_ratio"] == pytest.approx(lam, rel=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"parameter {k} not restored bitwise"


def test_removing_rng_replay_breaks_the_estimate(monkeypatch):
    """Guards the RNG contract: without replay each B2 pass draws new dropout masks and the quotient is noise."""
    monkeypatch.setattr(core, "_set_rng_state", lambda state: None)
    with sdpa_kernel(SDPBackend.MATH):
        model, halves, loss_of = make_problem(torch.float64)
        G, stats = run_core(model, halves, loss_of, lam=0.5, radius=1e-4, fd="central", weighting="absolute",
                            max_reg_ratio=None)
        ref, _, _ = exact_reference(model, halves, loss_of, 0.5, "absolute")
    assert rel_err(G, ref) > 1e-2


def test_lambda_zero_is_exactly_the_plain_gradient():
    model, halves, loss_of = make_problem(torch.float64)
    G, stats = run_core(model, halves, loss_of, lam=0.0, radius=1e-4)
    torch.manual_seed(123)
    params = list(model.parameters())
    g1 = flat(torch.autograd.grad(loss_of(halves[0]), params))
    g2 = flat(torch.autograd.grad(loss_of(halves[1]), params))
    ref = g1 * (25 / 40) + g2 * (15 / 40)
    assert torch.allclose(G, ref, rtol=1e-14, atol=1e-16)
    assert stats["reg_norm"] == 0.0


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml"])
def test_baselines_match_literal_inner_sgd_steps(algorithm):
    alpha = 0.05
    model, halves, loss_of = make_problem(torch.float64)
    G, stats = run_core(model, halves, loss_of, algorithm=algorithm, alpha=alpha)
    # literal: SGD step of size alpha on B1, then on B2, from theta, same dropout masks for B2
    inner = copy.deepcopy(model)
    opt = torch.optim.SGD(inner.parameters(), lr=alpha)
    theta = flat([p.detach().clone() for p in inner.parameters()])

    def inner_loss(half):
        xb, yb = half
        return nn.functional.cross_entropy(inner(xb).reshape(-1, 11), yb.reshape(-1))

    torch.manual_seed(123)
    opt.zero_grad()
    inner_loss(halves[0]).backward()
    opt.step()
    theta1 = flat([p.detach().clone() for p in inner.parameters()])
    opt.zero_grad()
    inner_loss(halves[1]).backward()
    g2_at_theta1 = flat([p.grad for p in inner.parameters()])
    opt.step()
    theta2 = flat([p.detach() for p in inner.parameters()])
    if algorithm == "reptile":
        ref = (theta - theta2) / (2 * alpha)
    else:
        ref = g2_at_theta1
    assert rel_err(G, ref) <= 1e-10
    assert rel_err(theta1, theta - alpha * flat(torch.autograd.grad(loss_of(halves[0]), list(model.parameters())))) < 1.0


def test_accumulates_into_existing_grad_and_honours_scales():
    model, halves, loss_of = make_problem(torch.float64)
    G, _ = run_core(model, halves, loss_of, lam=0.2, radius=1e-4)
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    reg = DotProductRegularizer(model.parameters(), lam=0.2, radius=1e-4)
    torch.manual_seed(123)
    # a backward_fn that scales the loss (as fairseq's fp16 optimizer does), undone with grad_scale
    reg.backward(lambda: loss_of(halves[0]), lambda: loss_of(halves[1]), weights=(25, 15),
                 backward_fn=lambda loss: (loss * 1024.0).backward(), grad_scale=1024.0, scale=40.0)
    G2 = flat([p.grad for p in model.parameters()])
    assert torch.allclose(G2, 1.0 + 40.0 * G, rtol=1e-9, atol=1e-12)


def test_weights_returned_by_the_callables():
    model, halves, loss_of = make_problem(torch.float64)
    G, _ = run_core(model, halves, loss_of, lam=0.2, radius=1e-4)
    model.zero_grad(set_to_none=True)
    reg = DotProductRegularizer(model.parameters(), lam=0.2, radius=1e-4)
    torch.manual_seed(123)
    reg.backward(lambda: (loss_of(halves[0]), 25), lambda: (loss_of(halves[1]), 15))
    assert torch.equal(flat([p.grad for p in model.parameters()]), G)


@pytest.mark.parametrize("which", ["loss1", "loss2"])
def test_non_finite_pass_skips_and_restores(which):
    model, halves, loss_of = make_problem(torch.float64)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = copy.deepcopy(model.state_dict())
    bad = lambda h: loss_of(h) * float("nan")  # noqa: E731
    l1 = (lambda: bad(halves[0])) if which == "loss1" else (lambda: loss_of(halves[0]))
    l2 = (lambda: bad(halves[1])) if which == "loss2" else (lambda: loss_of(halves[1]))
    stats = DotProductRegularizer(model.parameters(), lam=0.1).backward(l1, l2)
    assert "non-finite" in stats["skipped"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


def test_runaway_regularizer_is_skipped():
    model, halves, loss_of = make_problem(torch.float64)
    before = copy.deepcopy(model.state_dict())
    reg = DotProductRegularizer(model.parameters(), lam=1e6, radius=1e-4, weighting="absolute")
    stats = reg.backward(lambda: loss_of(halves[0]), lambda: loss_of(halves[1]))
    assert stats["skipped"].startswith("runaway")
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_perturbation_below_precision_is_detected():
    torch.manual_seed(0)
    w = nn.Parameter((torch.randn(64) * 100).to(torch.bfloat16))
    x = torch.randn(4, 64)
    reg = DotProductRegularizer([w], lam=0.1, radius=1e-3)
    loss = lambda xs: ((xs.to(torch.bfloat16) * w).float().sum(1) ** 2).mean()  # noqa: E731
    stats = reg.backward(lambda: loss(x[:2]), lambda: loss(x[2:]))
    assert stats["skipped"].startswith("perturbation vanished")
    assert "radius of at least" in stats["skipped"]
    assert w.grad is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_perturbation_error_bound_is_never_below_the_measured_error(dtype):
    """The first perturbation's rounding error is reported from a bound on norms unless the bound exceeds the
    limit; the skip decision is only unchanged if the bound holds. Large, small and subnormal weights, radii from
    far below to far above the weights' precision: the bound (limit inf) is never below the measurement (limit 0)."""
    torch.manual_seed(0)
    tiny = torch.finfo(dtype).tiny
    mixed = [(torch.randn(300) * scale) for scale in (100.0, 1.0, 1e-3)] + [torch.full((50,), tiny / 4)]
    subnormal = [torch.rand(300) * tiny / 2]                                       # only subnormal weights
    for weights, radii in ((mixed, (1e-8, 1e-5, 1e-3, 1e-1, 10.0)), (subnormal, (tiny / 8, tiny, 100 * tiny))):
        params = [nn.Parameter(w.to(dtype)) for w in weights]
        direction = [torch.randn(p.shape, dtype=torch.promote_types(p.dtype, torch.float32)) for p in params]
        norm = float(core._norm(direction))
        backup = [p.detach().clone() for p in params]
        reg = DotProductRegularizer(params)
        for radius in radii:
            found = {}
            for limit in (0.0, float("inf")):
                reg.max_perturbation_error = limit
                found[limit] = reg._perturb(backup, direction, radius / norm, norm)
                reg._restore(backup)
            assert found[0.0] > 0.0 or dtype == torch.float64 or weights is subnormal  # a measurement, not 0
            assert found[float("inf")] >= found[0.0], (radius, found)


def test_bitwise_restore_in_float32_for_all_algorithms():
    for kw in [dict(), dict(fd="forward"), dict(algorithm="reptile", alpha=0.1), dict(algorithm="fomaml", alpha=0.1)]:
        model, halves, loss_of = make_problem(torch.float32)
        before = copy.deepcopy(model.state_dict())
        run_core(model, halves, loss_of, **kw)
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), (kw, k)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(algorithm="maml"), "algorithm"),
        (dict(radius=0.0), "radius"),
        (dict(radius=-1.0), "radius"),
        (dict(lam=-0.1), "lam"),
        (dict(algorithm="reptile"), "alpha"),
        (dict(algorithm="fomaml", alpha=None), "alpha"),
        (dict(fd="backward"), "fd"),
        (dict(weighting="max"), "weighting"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        DotProductRegularizer([nn.Parameter(torch.zeros(2))], **kwargs)


def test_empty_parameter_list():
    with pytest.raises(ValueError, match="^params:"):
        DotProductRegularizer([])
    with pytest.raises(ValueError, match="^params:"):
        DotProductRegularizer([torch.zeros(2)])


def test_plain_training_loop_uses_the_core():
    """A plain loop (no fairseq) can train with it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reg = DotProductRegularizer(model.parameters(), lam=0.1, radius=1e-2)
    x = torch.randn(64, 4)
    y = x.sum(1, keepdim=True)
    mse = nn.functional.mse_loss
    first = float(mse(model(x), y))
    for _ in range(50):
        opt.zero_grad()
        stats = reg.backward(lambda: mse(model(x[:32]), y[:32]), lambda: mse(model(x[32:]), y[32:]))
        assert stats["skipped"] is None
        opt.step()
    assert float(mse(model(x), y)) < 0.5 * first


def test_half_precision_passes_are_unscaled_and_combined_in_float32():
    """The fp16 path: scaled backward on half-precision parameters, combined in float32, written back scaled."""
    torch.manual_seed(0)
    ref_model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    half_model = copy.deepcopy(ref_model).to(torch.bfloat16)
    ref_model.load_state_dict({k: v.float() for k, v in half_model.state_dict().items()})  # same (rounded) weights
    x = torch.randn(32, 8)
    y = x.sum(1, keepdim=True)

    def loss(model, xs, ys):
        return nn.functional.mse_loss(model(xs.to(next(model.parameters()).dtype)).float(), ys)

    results = []
    for model, backward_fn, grad_scale in ((ref_model, None, 1.0),
                                           (half_model, lambda t: (t * 256.0).backward(), 256.0)):
        reg = DotProductRegularizer(model.parameters(), lam=0.3, radius=0.5)
        stats = reg.backward(lambda: loss(model, x[:16], y[:16]), lambda: loss(model, x[16:], y[16:]),
                             backward_fn=backward_fn, grad_scale=grad_scale, scale=grad_scale)
        assert stats["skipped"] is None
        results.append(flat([p.grad.float() / grad_scale for p in model.parameters()]))
        assert all(p.grad.dtype == p.dtype for p in model.parameters())
    assert rel_err(results[1], results[0]) < 0.05  # bf16 forward/backward vs float32: same update


def test_fp16_grad_of_an_earlier_sub_batch_accumulates_the_scaled_update_in_float32():
    """--update-freq > 1 with fp16 weights: the second sub-batch's update is scaled in float32 and rounded once
    into the fp16 .grad, not rounded to fp16 first (where an unscaled update below 6e-8 flushes to zero)."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4096).half())
    x = torch.randn(2, 4096)
    s = 2.0 ** 15  # the loss scale: the pass gradients are representable, the unscaled update is not
    w.grad = (torch.randn(4096) * 1e-2).half()  # what the first sub-batch left
    before = w.grad.float().clone()
    reg = DotProductRegularizer([w], lam=0.0)
    loss = [lambda i=i: (w.float() * x[i]).sum() * 1e-8 for i in range(2)]
    stats = reg.backward(loss[0], loss[1], backward_fn=lambda t: (t * s).backward(), grad_scale=s, scale=s)
    assert stats["skipped"] is None
    expected = (before + s * 1e-8 * x.mean(0)).half().float()
    assert w.grad.dtype == torch.float16
    assert rel_err(w.grad.float() - before, expected - before) < 2e-2


def test_overflowing_pass_is_skipped_and_parameters_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).to(torch.float16)
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(32, 8, dtype=torch.float16)
    reg = DotProductRegularizer(model.parameters(), lam=0.1, radius=1.0)
    loss = lambda xs: model(xs).float().pow(2).mean()  # noqa: E731
    stats = reg.backward(lambda: loss(x[:16]), lambda: loss(x[16:]),
                         backward_fn=lambda t: (t * 1e30).backward(), grad_scale=1e30)  # fp16 grads overflow
    assert "non-finite" in stats["skipped"]
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_exploding_perturbed_loss_is_skipped():
    model, halves, loss_of = make_problem(torch.float64)
    reg = DotProductRegularizer(model.parameters(), lam=0.1, radius=1e4, weighting="absolute")
    stats = reg.backward(lambda: loss_of(halves[0]), lambda: loss_of(halves[1]))
    assert stats["skipped"].startswith("perturbed loss exploded")
    assert all(p.grad is None for p in model.parameters())
