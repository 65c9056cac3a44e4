"""Span head for extractive QA on a fairseq encoder with ``classification_heads`` (RoBERTa family).

The head lives in ``model.classification_heads[name]``, so ``model(src_tokens, classification_head_name=
name)`` returns its output and RoBERTa's checkpoint code saves, restores and (for a pretrained checkpoint
without it) initialises it like any classification head. Like fairseq's ``RobertaClassificationHead`` it
has a ``dense`` layer and an ``out_proj`` layer (RoBERTa's checkpoint upgrade expects both names), but it
is applied to every position: ``(batch, time, hidden) -> (batch, time, 2)``, the start and end logits.
"""

import logging

import torch.nn as nn
from fairseq import utils

logger = logging.getLogger(__name__)


class SpanHead(nn.Module):
    """Per-token start/end scorer: dropout -> dense -> activation -> dropout -> out_proj (2 outputs)."""

    def __init__(self, input_dim: int, inner_dim: int, activation_fn: str = "tanh", dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.dropout = nn.Dropout(p=dropout)
        self.out_proj = nn.Linear(inner_dim, 2)

    def forward(self, features, **kwargs):
        x = self.dropout(features)
        x = self.activation_fn(self.dense(x))
        x = self.dropout(x)
        return self.out_proj(x)


def _model_args(model):
    return getattr(model, "args", None) or getattr(model, "cfg", None)


def encoder_dim(model) -> int:
    args = _model_args(model)
    dim = getattr(args, "encoder_embed_dim", None) if args is not None else None
    if dim:
        return int(dim)
    enc = getattr(model, "encoder", None)
    emb = getattr(getattr(enc, "sentence_encoder", enc), "embed_tokens", None)
    if emb is not None:
        return int(emb.embedding_dim)
    raise TypeError(f"cannot find the hidden size of {type(model).__name__} (no encoder_embed_dim)")


def register_span_head(model, name: str = "qa_span", inner_dim: int = 0) -> SpanHead:
    """Add (or keep) a :class:`SpanHead` called ``name``; ``inner_dim`` 0 = the encoder's hidden size."""
    heads = getattr(model, "classification_heads", None)
    if not isinstance(heads, nn.ModuleDict):
        raise TypeError(
            f"extractive_qa needs an encoder with classification heads (RoBERTa family: --arch roberta_base, "
            f"roberta_large, xlm, ...), got {type(model).__name__}"
        )
    hidden = encoder_dim(model)
    inner = inner_dim or hidden
    args = _model_args(model)
    activation = getattr(args, "pooler_activation_fn", "tanh") or "tanh"
    dropout = float(getattr(args, "pooler_dropout", 0.0) or 0.0)
    if name in heads:
        old = heads[name]
        if isinstance(old, SpanHead) and old.dense.in_features == hidden and old.dense.out_features == inner:
            return old
        logger.warning("re-registering head %s (was %s)", name, type(old).__name__)
    head = SpanHead(hidden, inner, activation, dropout)
    heads[name] = head
    return head
