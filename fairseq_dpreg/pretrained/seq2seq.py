"""``--arch transformer_warm``: a fairseq transformer whose encoder starts from a converted encoder (BERT2RND).

Rothe, Narayan and Severyn (TACL 2020) warm-start a sequence-to-sequence model from a BERT checkpoint: the
encoder is the pretrained one, the decoder is new ("BERT2RND"), and the decoder's input and output embeddings
are the encoder's token embeddings (one vocabulary). Here the encoder is fairseq's ``TransformerEncoder`` built
with the flags that make it compute exactly what a converted folder's ``--arch hf_encoder`` computes
(``scripts/convert_hf_encoder.py``): learned positions counted from ``padding_idx + 1`` (the converter's
layout: 514 rows for 512 positions, token type 0 folded in), an embedding layer norm, post-norm layers, no
embedding scaling, the folder's activation, and its layer-norm epsilon (``--layernorm-eps``, applied to the
encoder's layer norms with :func:`.model.set_layernorm_eps`; the new decoder keeps fairseq's 1e-5). The data
must be binarized with the folder's ``dict.txt`` on both sides (``--share-all-embeddings``).

How the pretrained weights arrive: ``--encoder-init DIR`` (a converted folder) is read by ``build_model``.
The whole model is first built as fairseq builds any transformer (so the new decoder's initialisation follows
``--seed``; the random encoder drawn before it is deterministic too), then the encoder's tensors are
overwritten with ``DIR/model.pt``'s ``encoder.sentence_encoder.*`` (every one of them must be there with the
right shape: an error names the first that is not). After loading, ``encoder_init`` is cleared in the model's
config, which is what checkpoints store: a trained checkpoint holds the whole model, and fairseq-generate
or fairseq-validate rebuild it without reading ``DIR``. Resuming from ``checkpoint_last.pt`` re-reads ``DIR``
only when ``--encoder-init`` is passed again (its weights are then overwritten by the checkpoint's); without
the flag the resume needs no folder at all (``examples/gigaword/train.sh`` drops it when it resumes).
"""
import logging
import os

from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer.transformer_legacy import TransformerModel, base_architecture

from ..checkpoint_io import load_state
from .model import set_layernorm_eps

logger = logging.getLogger(__name__)

__all__ = ["WarmStartTransformerModel", "load_encoder_weights"]

ENC_PREFIX = "encoder.sentence_encoder."


class EncoderInitError(ValueError):
    """``--encoder-init`` names something that is not a converted folder matching the model."""


def _read_converted(folder):
    path = os.path.join(folder, "model.pt")
    if not os.path.isdir(folder):
        raise EncoderInitError(f"--encoder-init {folder}: no such folder (a converted encoder folder, from "
                               "scripts/convert_hf_encoder.py, e.g. pretrained/all-MiniLM-L6-v2 of `make minilm`)")
    if not os.path.isfile(path):
        raise EncoderInitError(f"--encoder-init {folder}: missing model.pt (a converted encoder folder holds "
                               "model.pt, dict.txt, tokenizer.json and conversion.json)")
    state = load_state(path)
    return {k[len(ENC_PREFIX):]: v for k, v in state["model"].items() if k.startswith(ENC_PREFIX)}


def load_encoder_weights(encoder, folder, dictionary):
    """Copy the converted encoder of ``folder`` into ``encoder`` (a fairseq ``TransformerEncoder``).

    Every tensor of ``encoder`` must come from the folder with the same shape, except the token embedding,
    whose first ``len(dictionary)`` rows are taken (the converted table has one more row, RoBERTa's
    ``<mask>``, last). The data's dictionary must be the folder's ``dict.txt``: its symbols are checked."""
    weights = _read_converted(folder)
    dict_path = os.path.join(folder, "dict.txt")
    if os.path.isfile(dict_path):
        from .tokenizer import read_dict_symbols

        symbols = read_dict_symbols(dict_path)
        ours = dictionary.symbols[dictionary.nspecial:]
        if ours != symbols[:len(ours)] or len(ours) != len(symbols):
            raise EncoderInitError(f"the data's dictionary ({len(ours)} symbols) is not {dict_path} "
                                   f"({len(symbols)} symbols): binarize with --srcdict/--tgtdict {dict_path}")
    own = encoder.state_dict()
    missing = [k for k in own if k not in weights and not k.endswith("version")]
    if missing:
        raise EncoderInitError(f"--encoder-init {folder}: model.pt has no {ENC_PREFIX}{missing[0]} "
                               f"({len(missing)} tensors missing): is it a converted hf_encoder?")
    new = {}
    for k, v in own.items():
        if k not in weights:
            new[k] = v
            continue
        w = weights[k]
        if k == "embed_tokens.weight" and w.shape[0] > v.shape[0] and w.shape[1:] == v.shape[1:]:
            w = w[: v.shape[0]]
        if w.shape != v.shape:
            raise EncoderInitError(
                f"--encoder-init {folder}: {k} has shape {tuple(w.shape)} in model.pt but {tuple(v.shape)} in "
                "this model: give the architecture flags of its conversion.json (fairseq_args: --encoder-layers, "
                "--encoder-embed-dim, --encoder-ffn-embed-dim, --encoder-attention-heads, and "
                "--max-source-positions = its --max-positions)")
        new[k] = w
    encoder.load_state_dict(new, strict=True)
    return len(new)


def _set(cfg, name, value):
    """Set a field of a model config that may be an OmegaConf DictConfig in struct mode."""
    try:
        from omegaconf import OmegaConf, open_dict

        if OmegaConf.is_config(cfg):
            with open_dict(cfg):
                setattr(cfg, name, value)
            return
    except ImportError:  # pragma: no cover
        pass
    setattr(cfg, name, value)


@register_model("transformer_warm")
class WarmStartTransformerModel(TransformerModel):
    @staticmethod
    def add_args(parser):
        TransformerModel.add_args(parser)
        parser.add_argument("--encoder-init", metavar="DIR",
                            help="converted encoder folder (scripts/convert_hf_encoder.py) whose model.pt initialises "
                                 "the encoder at the start of training; not needed to resume (without the flag) "
                                 "nor to generate")
        parser.add_argument("--layernorm-eps", type=float, metavar="EPS",
                            help="epsilon of the encoder's layer norms (conversion.json's layer_norm_eps: 1e-12 for "
                                 "BERT/MiniLM/ELECTRA); default 1e-12")

    @classmethod
    def build_model(cls, args, task):
        transformer_warm_architecture(args)
        model = super().build_model(args, task)
        set_layernorm_eps(model.encoder, float(args.layernorm_eps))
        folder = getattr(args, "encoder_init", None)
        if folder:
            n = load_encoder_weights(model.encoder, folder, task.source_dictionary)
            logger.info("transformer_warm: encoder initialised from %s (%d tensors); the decoder is new", folder, n)
            _set(args, "encoder_init", None)  # checkpoints hold the weights; never read the folder again
        return model


@register_model_architecture("transformer_warm", "transformer_warm")
def transformer_warm_architecture(args):
    """Encoder flags of a converted BERT-family encoder (defaults: all-MiniLM-L6-v2), a new 3-layer decoder
    of the same width, one shared vocabulary."""
    for name in ("encoder_normalize_before", "no_token_positional_embeddings"):
        if getattr(args, name, False):
            raise EncoderInitError(f"--{name.replace('_', '-')}: --arch transformer_warm's encoder is the converted "
                                   "one (post-norm, learned positions); drop the flag")
    defaults = {
        "encoder_layers": 6, "encoder_embed_dim": 384, "encoder_ffn_embed_dim": 1536, "encoder_attention_heads": 12,
        "max_source_positions": 512, "activation_fn": "gelu", "layernorm_eps": 1e-12,
        "decoder_layers": 3, "decoder_attention_heads": 6, "max_target_positions": 256,
    }
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if getattr(args, "decoder_embed_dim", None) is None:
        args.decoder_embed_dim = args.encoder_embed_dim
    if getattr(args, "decoder_ffn_embed_dim", None) is None:
        args.decoder_ffn_embed_dim = 4 * args.decoder_embed_dim
    # what makes fairseq's TransformerEncoder the converted encoder (as RoBERTa's is in fairseq)
    args.encoder_learned_pos = True
    args.layernorm_embedding = True
    args.no_scale_embedding = True
    args.encoder_normalize_before = False
    args.no_token_positional_embeddings = False
    # the new decoder: learned positions, the encoder's vocabulary and embeddings
    args.decoder_learned_pos = True
    args.share_all_embeddings = True
    args.share_decoder_input_output_embed = True
    base_architecture(args)
