"""``--arch hf_encoder``: fairseq's RoBERTa encoder with the one setting a BERT-family checkpoint needs on top.

A converted Hugging Face encoder (``scripts/convert_hf_encoder.py``) is fairseq's RoBERTa architecture
exactly (learned positions, embedding layer norm, post-norm layers, no embedding scaling; its
``conversion.json`` lists the flags), except for the layer-norm epsilon: BERT, MiniLM and ELECTRA use
1e-12 where fairseq's ``LayerNorm`` has 1e-5. This model is :class:`RobertaModel` plus ``--layernorm-eps``,
applied to every layer norm of the encoder and its LM head, so the converted weights compute what the
original computes. Classification heads, the QA span head, checkpoint upgrades and the hub interface are
RoBERTa's.

``--sentence-pair-encoding siamese`` classifies a sentence pair the way a sentence-embedding checkpoint
(sentence-transformers, e.g. all-MiniLM-L6-v2) was trained to compare sentences, as SBERT fine-tunes on NLI:
the pipelines' input ``<s> A </s> </s> B </s>`` is split at its ``</s> </s>``, ``<s> A </s>`` and ``<s> B
</s>`` are encoded separately by the same encoder, each is mean-pooled over its tokens (specials included)
and L2-normalised (the checkpoint's own pooling and normalisation), and the classification head reads
``[u, v, |u - v|, u * v]``. ``siamese-cosine`` gives the head cos(u, v) alone, the one quantity such a
checkpoint was trained to make large for related sentences. The default, ``joint``, is RoBERTa's: one
sequence, the head reads ``<s>``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta.model import RobertaClassificationHead, RobertaModel, base_architecture

__all__ = ["HFEncoderModel", "set_layernorm_eps", "split_pair"]
SIAMESE = ("siamese", "siamese-cosine")


def set_layernorm_eps(module: nn.Module, eps: float) -> int:
    """Set ``eps`` of every layer norm in ``module``; returns how many there were."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.LayerNorm) or type(m).__name__ == "FusedLayerNorm":
            m.eps = eps
            n += 1
    return n


@register_model("hf_encoder")
class HFEncoderModel(RobertaModel):
    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        parser.add_argument("--layernorm-eps", type=float, metavar="EPS",
                            help="epsilon of every layer norm (a converted checkpoint's conversion.json gives "
                                 "it: 1e-12 for BERT, MiniLM and ELECTRA, 1e-05 for RoBERTa); default: "
                                 "fairseq's 1e-05")
        parser.add_argument("--sentence-pair-encoding", choices=["joint", *SIAMESE],
                            help="joint (default, RoBERTa's): the classification head reads <s> of the whole "
                                 "input; siamese: the two sentences of <s> A </s> </s> B </s> are encoded "
                                 "separately, mean-pooled and L2-normalised (u, v), and the head reads "
                                 "[u, v, |u-v|, u*v], as sentence-embedding checkpoints are fine-tuned (SBERT); "
                                 "siamese-cosine: the head reads cos(u, v) alone")

    @classmethod
    def build_model(cls, args, task):
        hf_encoder_architecture(args)
        model = super().build_model(args, task)
        set_layernorm_eps(model, float(args.layernorm_eps))
        return model

    @property
    def siamese(self):
        return getattr(self.args, "sentence_pair_encoding", "joint") in SIAMESE

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        super().register_classification_head(name, num_classes, inner_dim, **kwargs)
        if self.siamese:
            a = self.args  # the head reads cos(u, v), or [u, v, |u - v|, u * v]
            width = 1 if a.sentence_pair_encoding == "siamese-cosine" else 4 * a.encoder_embed_dim
            self.classification_heads[name] = RobertaClassificationHead(
                input_dim=width, inner_dim=inner_dim or a.encoder_embed_dim,
                num_classes=num_classes, activation_fn=a.pooler_activation_fn, pooler_dropout=a.pooler_dropout,
                q_noise=a.quant_noise_pq, qn_block_size=a.quant_noise_pq_block_size,
                do_spectral_norm=a.spectral_norm_classification_head)

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False, classification_head_name=None,
                **kwargs):
        if classification_head_name is None or not self.siamese:
            return super().forward(src_tokens, features_only, return_all_hiddens, classification_head_name, **kwargs)
        d = self.encoder.dictionary
        u, v = (self.sentence_embedding(t) for t in split_pair(src_tokens, d.pad(), d.eos()))
        if self.args.sentence_pair_encoding == "siamese-cosine":
            features = (u * v).sum(-1, keepdim=True).unsqueeze(1)  # unit vectors: the cosine
        else:
            features = torch.cat([u, v, (u - v).abs(), u * v], dim=-1).unsqueeze(1)
        # (batch, 1, features): RoBERTa's head reads position 0
        return self.classification_heads[classification_head_name](features), {}

    def sentence_embedding(self, tokens):
        """Mean over the non-pad positions of the last layer, L2-normalised: (batch, embed_dim)."""
        x, _ = self.encoder(tokens, features_only=True)
        mask = tokens.ne(self.encoder.dictionary.pad()).unsqueeze(-1).to(x)
        return F.normalize((x * mask).sum(1) / mask.sum(1), dim=-1)


def split_pair(src_tokens, pad, eos):
    """``<s> A </s> </s> B </s>`` (any padding side) -> (``<s> A </s>``, ``<s> B </s>``), each right-padded."""
    first, second = [], []
    for row in src_tokens:
        toks = row[row.ne(pad)]
        ends = toks.eq(eos).nonzero().flatten().tolist()
        if len(ends) < 3 or ends[1] != ends[0] + 1:
            raise ValueError("--sentence-pair-encoding siamese needs sentence pairs <s> A </s> </s> B </s> "
                             f"(a task with input0 and input1, --separator-token 2); got {toks.tolist()[:40]}")
        first.append(toks[: ends[0] + 1])
        second.append(torch.cat([toks[:1], toks[ends[1] + 1:]]))
    pad_rows = lambda rows: nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad)  # noqa: E731
    return pad_rows(first), pad_rows(second)


@register_model_architecture("hf_encoder", "hf_encoder")
def hf_encoder_architecture(args):
    base_architecture(args)
    if getattr(args, "layernorm_eps", None) is None:
        args.layernorm_eps = 1e-5
    if getattr(args, "sentence_pair_encoding", None) is None:
        args.sentence_pair_encoding = "joint"
