"""``--arch hf_encoder``: fairseq's RoBERTa encoder with the one setting a BERT-family checkpoint needs on top.

A converted Hugging Face encoder (``scripts/convert_hf_encoder.py``) is fairseq's RoBERTa architecture
exactly (learned positions, embedding layer norm, post-norm layers, no embedding scaling; its
``conversion.json`` lists the flags), except for the layer-norm epsilon: BERT, MiniLM and ELECTRA use
1e-12 where fairseq's ``LayerNorm`` has 1e-5. This model is :class:`RobertaModel` plus ``--layernorm-eps``,
applied to every layer norm of the encoder and its LM head, so the converted weights compute what the
original computes. Classification heads, the QA span head, checkpoint upgrades and the hub interface are
RoBERTa's.
"""
import torch.nn as nn
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta.model import RobertaModel, base_architecture

__all__ = ["HFEncoderModel", "set_layernorm_eps"]


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

    @classmethod
    def build_model(cls, args, task):
        hf_encoder_architecture(args)
        model = super().build_model(args, task)
        set_layernorm_eps(model, float(args.layernorm_eps))
        return model


@register_model_architecture("hf_encoder", "hf_encoder")
def hf_encoder_architecture(args):
    base_architecture(args)
    if getattr(args, "layernorm_eps", None) is None:
        args.layernorm_eps = 1e-5
