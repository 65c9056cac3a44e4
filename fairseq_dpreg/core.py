"""Pure-PyTorch core of the gradient dot-product regularizer (Beyond Reptile, SPEC section 1).

No fairseq import here: a plain training loop can use :class:`DotProductRegularizer` directly::

    reg = DotProductRegularizer(model.parameters(), lam=0.1, radius=1e-2)
    opt.zero_grad()
    stats = reg.backward(lambda: loss_fn(model, half1), lambda: loss_fn(model, half2), weights=(n1, n2))
    opt.step()

One call runs the passes of SPEC 1.2 (dotprod) or 1.3 (reptile, fomaml) and accumulates the update G into
``.grad`` the way ``loss.backward()`` accumulates a gradient. Pass gradients are combined in float32 (or
float64 for float64 parameters) whatever the parameters' precision, parameters are restored bitwise from a
copy after every perturbation, and every evaluation of ``loss2`` replays the RNG state that followed the
``loss1`` pass, so stochastic layers draw the same masks at every point.
"""
import math

import torch

ALGORITHMS = ("dotprod", "reptile", "fomaml")
FD_SCHEMES = ("central", "forward")
WEIGHTINGS = ("relative", "absolute")
MAX_PERTURBATION_ERROR = 0.1  # rounding error (relative) of an applied perturbation above which a call skips


def _rng_state():
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state):
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _dot(xs, ys):
    """Sum of elementwise products of two tensor lists, accumulated in float64 on the first device."""
    total = None
    for x, y in zip(xs, ys):
        d = torch.dot(x.reshape(-1), y.reshape(-1)).double()
        total = d if total is None else total + d.to(total.device)
    return total


def rounding_noise(params):
    """RMS length (in parameter space) of the rounding that moving these tensors by a small step costs in their
    own precision: sqrt(sum(spacing^2) / 12), spacing = the gap to the next representable value of each entry."""
    total = 0.0
    for p in params:
        a = p.detach().abs()
        spacing = torch.nextafter(a, torch.full_like(a, float("inf"))).sub_(a)
        total += float(spacing.double().square().sum())
    return math.sqrt(total / 12.0)


def _norm(xs):
    norms = torch._foreach_norm(xs)
    return torch.linalg.vector_norm(torch.stack([n.double().to(norms[0].device) for n in norms]))


class DotProductRegularizer:
    """Accumulates the dot-product-regularized gradient of SPEC 1.2-1.4 (or a Reptile/FOMAML baseline).

    Args:
        params: the parameters (an iterable of tensors, or of param-group dicts with "params").
        algorithm: "dotprod" (explicit dot-product term), "reptile" or "fomaml" (SPEC 1.3 baselines).
        lam: weight of the dot-product term (dotprod). With ``weighting="absolute"`` it is lambda of
            J = L - lambda <g1, g2>; with ``"relative"`` it is beta, the norm of the regularizing term as a
            fraction of the norm of the loss gradient. 0 reproduces the plain gradient of the two halves.
        radius: finite-difference radius r > 0 (a length in parameter space).
        fd: "central" (O(r^2) error) or "forward" (O(r)); both cost three half-batch passes.
        weighting: "relative" (bounded, default) or "absolute".
        alpha: inner SGD step size of reptile/fomaml (required for them, ignored by dotprod).
        max_reg_ratio: runaway guard: a regularizing term more than this many times the norm of the loss
            term makes the call skip (nothing accumulated). ``None`` disables the guard.
        max_perturbation_error: relative error allowed between the perturbation actually applied to the
            parameters and the one asked for; larger means the radius is below the parameters' precision.
        max_loss_jump: a B2 loss at a perturbed point further than ``max_loss_jump * (1 + |L1|)`` from the B1
            loss at theta means the radius (or alpha) is far too large: the call skips. ``None`` disables it.
    """

    def __init__(self, params, algorithm="dotprod", lam=0.1, radius=1e-2, fd="central",
                 weighting="relative", alpha=None, max_reg_ratio=10.0, max_perturbation_error=MAX_PERTURBATION_ERROR,
                 max_loss_jump=10.0):
        params = list(params)
        if params and isinstance(params[0], dict):
            params = [p for group in params for p in group["params"]]
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ValueError("params: empty parameter list (no tensor requires grad)")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm: unknown {algorithm!r}, expected one of {ALGORITHMS}")
        if fd not in FD_SCHEMES:
            raise ValueError(f"fd: unknown {fd!r}, expected one of {FD_SCHEMES}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting: unknown {weighting!r}, expected one of {WEIGHTINGS}")
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam: must be a finite number >= 0, got {lam!r}")
        if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
            raise ValueError(f"radius: must be a finite number > 0, got {radius!r}")
        if algorithm != "dotprod":
            if alpha is None:
                raise ValueError(f"alpha: required for algorithm={algorithm!r} (the inner SGD step size)")
            if not (math.isfinite(alpha) and alpha > 0):
                raise ValueError(f"alpha: must be a finite number > 0, got {alpha!r}")
        if max_reg_ratio is not None and not max_reg_ratio > 0:
            raise ValueError(f"max_reg_ratio: must be > 0 or None, got {max_reg_ratio!r}")
        self.params = params
        self.algorithm, self.lam, self.radius, self.fd = algorithm, float(lam), float(radius), fd
        self.weighting, self.alpha = weighting, alpha
        self.max_reg_ratio, self.max_perturbation_error = max_reg_ratio, max_perturbation_error
        self.max_loss_jump = max_loss_jump

    # -- passes ---------------------------------------------------------------------------------
    def _pass(self, closure, backward_fn, grad_scale):
        """One forward/backward on fresh .grad: (loss value, weight or None, gradients in float32+)."""
        for p in self.params:
            p.grad = None
        out = closure()
        loss, weight = out if isinstance(out, (tuple, list)) else (out, None)
        backward_fn(loss)
        grads = []
        for p in self.params:
            g, p.grad = p.grad, None
            if g is None:
                g = torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))
            elif g.is_sparse:
                g = g.to_dense()
            if g.dtype not in (torch.float32, torch.float64):
                g = g.float()
            if grad_scale != 1.0:
                g.div_(grad_scale)
            grads.append(g)
        return float(loss.detach()), weight, grads

    def _perturb(self, backup, direction, step, direction_norm, from_theta=True):
        """Set params = backup + step * direction. ``from_theta``: the parameters still equal ``backup`` bitwise, so
        same-precision ones are moved in place without being copied back first, and the relative rounding error of
        the change applied is returned (else 0.0).

        That error is first bounded from norms: per entry, |fl(b + s d) - (b + s d)| <= eps (|b| + 2 |s d|) + 2 eps
        tiny (eps of the weights' dtype, plus float32's where they are rounded from float32; the last term covers
        subnormal results). Only where the bound exceeds ``max_perturbation_error`` is the error measured entry by
        entry, which costs a temporary the size of the parameters; the skip decision is the same either way."""
        with torch.no_grad():
            for p, b, d in zip(self.params, backup, direction):
                if p.dtype == d.dtype:
                    (p if from_theta else p.copy_(b)).add_(d, alpha=step)
                else:                                          # low precision: rounded once, from fp32
                    p.copy_(d.mul(step).add_(b))
        change = abs(step) * direction_norm
        if not from_theta or change == 0:
            return 0.0
        eps = tiny = 0.0
        for p, d in zip(self.params, direction):
            info = torch.finfo(p.dtype)
            eps = max(eps, info.eps + (torch.finfo(d.dtype).eps if p.dtype != d.dtype else 0.0))
            tiny = max(tiny, info.tiny)
        numel = sum(p.numel() for p in self.params)
        bound = (eps * (float(_norm(backup)) + 2 * change) + 2 * eps * tiny * math.sqrt(numel)) / change
        if bound <= self.max_perturbation_error:
            return bound
        errors = []
        with torch.no_grad():
            for p, b, d in zip(self.params, backup, direction):
                applied = p.to(d.dtype).sub_(b) if p.dtype != d.dtype else torch.sub(p, b)
                errors.append(torch.linalg.vector_norm(applied.sub_(d, alpha=step)))
        return float(torch.linalg.vector_norm(torch.stack(errors))) / change

    def _restore(self, backup):
        with torch.no_grad():
            for p, b in zip(self.params, backup):
                p.copy_(b)

    # -- the update ----------------------------------------------------------------------------
    def backward(self, loss1, loss2, weights=None, backward_fn=None, scale=1.0, grad_scale=1.0, reg_scale=1.0):
        """Run the passes and accumulate ``scale * G`` into ``.grad``; return a dict of statistics.

        Args:
            loss1, loss2: zero-argument callables returning the mean loss of half B1 / B2 (a scalar tensor),
                or a pair (mean loss, weight) when the weight is only known after the forward pass.
                ``loss1`` runs first from the current RNG state; every evaluation of ``loss2`` starts from
                the RNG state that followed the ``loss1`` pass (CPU and CUDA).
            weights: (n1, n2), the sizes the halves' losses are normalised by (e.g. target tokens). Defaults
                to the weights returned by the callables, else (1, 1).
            backward_fn: called as ``backward_fn(loss)`` instead of ``loss.backward()`` (e.g. fairseq's
                ``optimizer.backward``, which scales the loss).
            scale: multiplies the update written into ``.grad``; a callable gets the weights (n1, n2) (fairseq's
                trainer divides by the sample size later, so its glue passes (n1 + n2) * loss_scale).
            grad_scale: the factor by which ``backward_fn`` multiplies gradients (the fp16 loss scale); pass
                gradients are divided by it before use.
            reg_scale: multiplies the regularizing term (lazy regularization every k updates uses k).

        Returns:
            dict with g1_norm, g2_norm, cos (of g1 and g2), reg_norm, loss_grad_norm, reg_ratio (reg_norm /
            loss_grad_norm: beta under relative weighting, the effective beta under absolute), loss1, loss2,
            perturbation_error (relative rounding error of the first perturbation: measured, or a bound on it where
            the bound is already under ``max_perturbation_error``) and skipped: None, or why nothing was accumulated
            (a non-finite pass, a runaway regularizing term, a perturbation below the parameters' precision).
            Parameters are restored bitwise in every case, and a skipped call leaves ``.grad`` as it found it.
        """
        backward_fn = backward_fn or (lambda t: t.backward())
        stash = [p.grad for p in self.params]
        stats = {"skipped": None, "perturbation_error": 0.0, "reg_norm": 0.0}
        backup = None
        seen_w2 = []
        try:
            stats["loss1"], w1, g1 = self._pass(loss1, backward_fn, grad_scale)
            after_loss1 = _rng_state()
            n1g = stats["g1_norm"] = float(_norm(g1))
            if not (math.isfinite(n1g) and math.isfinite(stats["loss1"])):
                raise _Skip("non-finite loss or gradient in the B1 pass")

            def run2(where):
                _set_rng_state(after_loss1)
                loss_2, w2, g = self._pass(loss2, backward_fn, grad_scale)
                if not (math.isfinite(loss_2) and math.isfinite(float(_norm(g)))):
                    raise _Skip(f"non-finite loss or gradient in the B2 pass at {where}")
                jump = abs(loss_2 - stats["loss1"])
                if where != "theta" and self.max_loss_jump is not None and \
                        jump > self.max_loss_jump * (1.0 + abs(stats["loss1"])):
                    raise _Skip(f"perturbed loss exploded: B2 loss {loss_2:.4g} at {where} against B1 loss "
                                f"{stats['loss1']:.4g} at theta; the radius (or alpha) is far too large")
                stats.setdefault("loss2", loss_2)
                seen_w2.append(w2)
                return w2, g

            lam = self.lam * reg_scale
            if self.algorithm == "dotprod" and (lam == 0 or n1g == 0):
                # No regularizing term (or no direction to differentiate along): the halves' plain gradient.
                w2, g2 = run2("theta")
                n1, n2 = self._weights(weights, w1, w2)
                self._pair_stats(stats, g1, n1g, g2)
                update = self._mix(g1, n1, g2, n2)
                stats["loss_grad_norm"] = float(_norm(update))
            else:
                backup = [p.detach().clone() for p in self.params]
                if self.algorithm == "dotprod":
                    update = self._dotprod(g1, n1g, run2, backup, weights, w1, lam, stats)
                else:
                    update = self._baseline(g1, n1g, run2, backup, stats)
        except _Skip as e:
            for p, acc in zip(self.params, stash):
                p.grad = acc
            stats["skipped"] = str(e)
            return stats
        finally:
            if backup is not None:
                self._restore(backup)
        if callable(scale):
            scale = scale(*self._weights(weights, w1, seen_w2[0]))
        for p, acc, u in zip(self.params, stash, update):
            if acc is None:
                p.grad = u.mul_(scale) if u.dtype == p.dtype else (u * scale).to(p.dtype)
            elif acc.dtype == u.dtype:
                p.grad = acc.add_(u, alpha=scale)
            else:  # a low-precision .grad (fp16 weights, --update-freq > 1): scale and add in float32, round once
                p.grad = acc.copy_(u.mul_(scale).add_(acc))
        return stats

    def _dotprod(self, g1, n1g, run2, backup, weights, w1, lam, stats):
        r, step = self.radius, self.radius / n1g
        # The rounding of a perturbation is checked once (the other sign meets the same precision).
        if self.fd == "central":
            stats["perturbation_error"] = self._perturb(backup, g1, step, n1g)
            w2, g_a = run2("theta + r u")                      # g2(theta + r u)
            self._perturb(backup, g1, -step, n1g, from_theta=False)
        else:
            w2, g_a = run2("theta")                            # g2(theta)
            stats["perturbation_error"] = self._perturb(backup, g1, -step, n1g)
        err = stats["perturbation_error"]
        if err > self.max_perturbation_error:
            raise _Skip(f"perturbation vanished: radius {r:g} is below the parameters' precision (relative "
                        f"error {err:.2g} of the change applied); use a radius of at least "
                        f"{100 * rounding_noise(backup):.3g}")
        _, g_b = run2("theta - r u")                           # g2(theta - r u)
        n1, n2 = self._weights(weights, w1, w2)
        # (g_a, g_b) -> g_a = g2_hat and g_b = h = ||g1|| (H2 u)_hat, in place.
        torch._foreach_sub_(g_b, g_a)
        if self.fd == "central":
            torch._foreach_add_(g_a, g_b, alpha=0.5)           # (g2+ + g2-) / 2
            torch._foreach_mul_(g_b, -n1g / (2 * r))           # ||g1|| (g2+ - g2-) / (2r)
        else:
            torch._foreach_mul_(g_b, -n1g / r)                 # ||g1|| (g2 - g2-) / r
        g2_hat, h = g_a, g_b
        self._pair_stats(stats, g1, n1g, g2_hat)
        loss_grad = self._mix(g1, n1, g2_hat, n2)               # (n1 g1 + n2 g2_hat) / n
        loss_norm, h_norm = float(_norm(loss_grad)), float(_norm(h))
        if self.weighting == "absolute":
            coef = -2.0 * lam
        else:
            coef = -lam * loss_norm / h_norm if h_norm > 0 else 0.0
        reg_norm = abs(coef) * h_norm
        stats.update(loss_grad_norm=loss_norm, reg_norm=reg_norm,
                     reg_ratio=reg_norm / loss_norm if loss_norm > 0 else 0.0)  # the effective beta
        if not (math.isfinite(reg_norm) and math.isfinite(loss_norm)):
            raise _Skip("non-finite regularizing term")
        if self.max_reg_ratio is not None and reg_norm > self.max_reg_ratio * loss_norm:
            raise _Skip(f"runaway: regularizing term {reg_norm:.3g} is over {self.max_reg_ratio:g}x the loss "
                        f"gradient {loss_norm:.3g}")
        torch._foreach_add_(loss_grad, h, alpha=coef)
        return loss_grad

    def _baseline(self, g1, n1g, run2, backup, stats):
        """Reptile / FOMAML as single-task regularizers: an inner SGD step on B1, then B2 (SPEC 1.3)."""
        if n1g > 0:
            stats["perturbation_error"] = self._perturb(backup, g1, -self.alpha, n1g)
        _, g2 = run2("theta - alpha g1")
        self._pair_stats(stats, g1, n1g, g2)
        if self.algorithm == "reptile":  # (theta - theta_2) / (2 alpha) = (g1 + g2(theta - alpha g1)) / 2
            return self._mix(g1, 1.0, g2, 1.0)
        return g2                          # fomaml: g2(theta - alpha g1)

    @staticmethod
    def _mix(a, wa, b, wb):
        """(wa * a + wb * b) / (wa + wb), in a's buffers."""
        torch._foreach_mul_(a, wa / (wa + wb))
        torch._foreach_add_(a, b, alpha=wb / (wa + wb))
        return a

    @staticmethod
    def _pair_stats(stats, g1, n1g, g2):
        n2g = stats["g2_norm"] = float(_norm(g2))
        stats["cos"] = float(_dot(g1, g2)) / (n1g * n2g) if n1g > 0 and n2g > 0 else 0.0

    @staticmethod
    def _weights(weights, w1, w2):
        if weights is None:
            weights = (w1, w2) if w1 is not None and w2 is not None else (1.0, 1.0)
        n1, n2 = (float(w) for w in weights)
        if not (n1 > 0 and n2 > 0):
            raise ValueError(f"weights: both halves need a positive weight, got ({n1:g}, {n2:g})")
        return n1, n2


class _Skip(Exception):
    """Raised inside a call to abandon it: nothing is accumulated, parameters are restored."""
