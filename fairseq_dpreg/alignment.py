"""Gradient alignment at a checkpoint, measured rather than assumed (``scripts/grad_alignment.py``).

The regularizer rewards agreement between the gradients of different batches during training (it logs
``dpreg_cos``, the cosine of its own two half-batches). Whether a trained model ends up with better aligned
gradients on data it never trained on is a separate question. This module answers it for one checkpoint: the
cosine between the loss gradients of disjoint held-out mini-batches, batch 1 against batch 2, 3 against 4, and
so on, with dropout off (``model.eval()``), every trainable parameter included, in float64.
"""
import math

import torch

__all__ = ["AlignmentError", "checkpoint_alignment", "gradient_cosines", "held_out_batches", "load_checkpoint"]


class AlignmentError(ValueError):
    """Bad input (the message names the file or flag)."""


def flat_gradient(model, criterion, sample):
    """The gradient of the criterion's loss on ``sample`` with respect to every trainable parameter, as one float64
    vector (a parameter the loss does not reach contributes zeros)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss, _, _ = criterion(model, sample)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double() for g, p in zip(grads, params)])


def gradient_cosines(model, criterion, batches):
    """cos(g_1, g_2), cos(g_3, g_4), ...: one value per consecutive pair of batches (an odd last batch is unused)."""
    out, first = [], None
    for sample in batches:
        g = flat_gradient(model, criterion, sample)
        if first is None:
            first = g
            continue
        denom = first.norm() * g.norm()
        out.append(float(first @ g / denom) if denom > 0 else float("nan"))
        first = None
    return out


def load_checkpoint(path, data):
    """(model, criterion, task, cfg) of a fairseq checkpoint (plain or trained with the plugin), on the CPU."""
    import fairseq  # noqa: F401  (fairseq first: the plugin registers its glue only when fairseq is loaded)

    from .glue.checkpoint import load_for_inference

    try:  # eval mode: dropout off, so the gradient of a batch is a function of the weights alone
        model, cfg, task = load_for_inference(path, data)
    except FileNotFoundError as e:
        raise AlignmentError(f"{path}: cannot load ({e})")
    return model, task.build_criterion(cfg.criterion), task, cfg


def held_out_batches(task, model, cfg, subset, n, max_tokens=None, batch_size=None, seed=1):
    """The first ``n`` mini-batches of ``subset`` in fairseq's shuffled order for ``seed``: disjoint by construction."""
    from fairseq import utils

    try:
        task.load_dataset(subset)
    except FileNotFoundError as e:
        raise AlignmentError(f"--subset {subset}: {e}")
    itr = task.get_batch_iterator(
        dataset=task.dataset(subset),
        max_tokens=max_tokens if max_tokens is not None else cfg.dataset.max_tokens,
        max_sentences=batch_size if batch_size is not None else cfg.dataset.batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=False, required_batch_size_multiple=1, seed=seed, num_workers=0,
    ).next_epoch_itr(shuffle=True)
    batches = []
    for sample in itr:
        if len(batches) == n:
            break
        if sample:
            batches.append(sample)
    return batches


def checkpoint_alignment(path, data, subset="valid", pairs=16, max_tokens=None, batch_size=None, seed=1):
    """Mean, sd and 95% t interval of the cosine between the gradients of ``pairs`` pairs of disjoint held-out
    batches at checkpoint ``path``."""
    if pairs < 2:
        raise AlignmentError(f"--pairs {pairs}: need at least 2 pairs for a standard deviation")
    model, criterion, task, cfg = load_checkpoint(path, data)
    batches = held_out_batches(task, model, cfg, subset, 2 * pairs, max_tokens, batch_size, seed)
    if len(batches) < 2 * pairs:
        raise AlignmentError(f"--subset {subset} gives {len(batches)} batches, {2 * pairs} needed for --pairs {pairs} "
                             "(lower --pairs or the batch size)")
    cos = gradient_cosines(model, criterion, batches)
    from scipy import stats

    n = len(cos)
    mean = sum(cos) / n
    sd = math.sqrt(sum((c - mean) ** 2 for c in cos) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {"checkpoint": str(path), "subset": subset, "pairs": n, "seed": seed,
            "sentences_per_batch": sum(b["nsentences"] for b in batches) / len(batches),
            "mean_cos": mean, "sd": sd, "ci95": [mean - half, mean + half], "cosines": cos}
