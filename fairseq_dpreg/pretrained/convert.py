"""Hugging Face encoder checkpoints (BERT and MiniLM, RoBERTa, ELECTRA discriminators) -> fairseq.

:func:`convert` reads a Hugging Face model folder (``config.json``; ``model.safetensors`` or
``pytorch_model.bin``; ``tokenizer.json``, or ``vocab.txt`` / ``vocab.json`` + ``merges.txt`` to build one)
and writes a folder that ``fairseq-train --restore-file`` and the project's pipelines use:

- ``model.pt``: the weights of ``--arch hf_encoder`` (:mod:`.model`: fairseq's RoBERTa encoder plus the
  layer-norm epsilon), with the dictionary below plus the ``<mask>`` symbol that fairseq's RoBERTa tasks add;
- ``dict.txt``: line ``i`` is the Hugging Face token id ``i`` as a symbol (``"i 1"``), like RoBERTa's
  ``dict.txt`` of GPT-2 BPE ids: fairseq index = 4 + Hugging Face id;
- ``tokenizer.json``: the tokenizer, for ``prepare.sh --tokenizer hf`` / ``--bpe hf``;
- ``conversion.json``: the source, the fairseq flags that rebuild the architecture (``fairseq_args``), where
  every tensor went, and what was not converted and why.

The mapping, explicit for every difference between the two architectures:

- **embedding rows**: fairseq's four specials come first: ``<s>`` = the model's [CLS] / ``<s>`` row, ``<pad>``
  = its pad row, ``</s>`` = [SEP] / ``</s>``, ``<unk>`` = its unknown row; then every original row in id
  order; ``<mask>`` (last) = the model's mask row. So the RoBERTa sentence-pair layout the pipelines build,
  ``<s> A </s> </s> B </s>``, reads ``[CLS] A [SEP] [SEP] B [SEP]`` for a BERT-family model.
- **positions**: fairseq counts positions from ``padding_idx + 1`` = 2: BERT and ELECTRA rows ``p`` move to
  ``p + 2`` (rows 0 and 1 are never used and stay zero); RoBERTa already counts from 2 and is copied as is.
- **token types**: fairseq's encoder has none. Every input of the pipelines is token type 0, so type 0's
  embedding is added to every position row (exact for type-0 inputs). Other types (BERT's type 1 for the
  second segment) are not converted: a pair is told apart by its separators, as in RoBERTa.
- **layer-norm epsilon**: ``--layernorm-eps`` of ``--arch hf_encoder`` (1e-12 for BERT-family models).
- **pooler** (dense + tanh on [CLS]): not converted; fairseq's classification heads start their own
  dense + tanh layer, as in RoBERTa fine-tuning.
- **LM head**: converted when the checkpoint has one (BERT ``cls.predictions``, RoBERTa ``lm_head``);
  otherwise (``BertModel`` checkpoints such as MiniLM, ELECTRA discriminators) fairseq's RoBERTa LM head is
  initialised fresh and said so. Fine-tuning tasks never use it.
- refused, with the reason: an ELECTRA whose embedding size differs from its hidden size (ELECTRA-small:
  its ``embeddings_project`` layer has no place in fairseq's encoder), relative position embeddings,
  decoders, and activations that fairseq lacks.
"""

import json
import os
import re
import shutil
import tempfile
from argparse import Namespace
from typing import Dict, List, Optional, Tuple

import torch

from ..atomic import write_json_atomic, write_lines_atomic

__all__ = ["ConversionError", "FAMILIES", "convert", "load_converted_model", "read_hf_folder"]

FAMILIES = ("bert", "roberta", "electra")
N_SPECIAL = 4  # fairseq Dictionary: <s> <pad> </s> <unk>
PREFIXES = ("bert.", "roberta.", "electra.")
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_accurate", "gelu_pytorch_tanh": "gelu_accurate"}
DEFAULT_SPECIALS = {
    "bert": {"cls": "[CLS]", "pad": "[PAD]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"},
    "electra": {"cls": "[CLS]", "pad": "[PAD]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"},
    "roberta": {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"},
}
# special_tokens_map.json names -> ours
SPECIAL_MAP_KEYS = {"cls_token": "cls", "pad_token": "pad", "sep_token": "sep", "unk_token": "unk",
                    "mask_token": "mask"}

# encoder layer i: Hugging Face name (after the family prefix) -> fairseq name
LAYER_MAP = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "output.LayerNorm": "final_layer_norm",
}
ENC = "encoder.sentence_encoder."


class ConversionError(ValueError):
    """The folder cannot be converted; the message says which file and why."""


# ------------------------------------------------------------------------------------------------- reading


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: not valid JSON ({e})") from None


def read_hf_folder(hf_dir: str) -> Tuple[dict, Dict[str, torch.Tensor], str]:
    """``(config, weights, weights_file)`` of a Hugging Face model folder; weights keep their original names."""
    if not os.path.isdir(hf_dir):
        raise ConversionError(f"{hf_dir}: no such folder")
    cfg_path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(cfg_path):
        raise ConversionError(f"{hf_dir}: no config.json (a Hugging Face model folder holds config.json and "
                              "model.safetensors or pytorch_model.bin)")
    config = _load_json(cfg_path)
    st, pt = os.path.join(hf_dir, "model.safetensors"), os.path.join(hf_dir, "pytorch_model.bin")
    if os.path.isfile(st):
        from safetensors.torch import load_file

        weights, path = load_file(st), st
    elif os.path.isfile(pt):
        weights, path = torch.load(pt, map_location="cpu", weights_only=True), pt
    else:
        shards = [n for n in os.listdir(hf_dir) if re.match(r".*-\d+-of-\d+\.(safetensors|bin)$", n)]
        what = f" (sharded weights {shards[0]}... are not supported)" if shards else ""
        raise ConversionError(f"{hf_dir}: neither model.safetensors nor pytorch_model.bin{what}")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
    return config, weights, path


def _strip(weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop the family prefix (``bert.``, ``roberta.``, ``electra.``) of the encoder's tensors; old
    TensorFlow-style ``LayerNorm.gamma/beta`` become ``weight/bias``."""
    out = {}
    for k, v in weights.items():
        for p in PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        k = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k)
        k = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)
        out[k] = v
    return out


def _check_config(config: dict, hf_dir: str) -> str:
    family = config.get("model_type")
    where = os.path.join(hf_dir, "config.json")
    if family not in FAMILIES:
        raise ConversionError(f"{where}: model_type {family!r} is not supported (supported: {', '.join(FAMILIES)}; "
                              "XLM-R and others differ in ways this converter does not check)")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise ConversionError(f"{where}: a decoder (is_decoder / add_cross_attention) is not an encoder checkpoint")
    pos = config.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise ConversionError(f"{where}: position_embedding_type {pos!r}: fairseq's encoder has learned absolute "
                              "positions only")
    act = config.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ConversionError(f"{where}: hidden_act {act!r} has no fairseq equivalent "
                              f"(supported: {', '.join(ACTIVATIONS)})")
    if family == "electra" and config.get("embedding_size", config["hidden_size"]) != config["hidden_size"]:
        raise ConversionError(
            f"{where}: ELECTRA with embedding_size {config['embedding_size']} != hidden_size {config['hidden_size']} "
            "(ELECTRA-small): its embeddings_project layer, between the embeddings and the first layer, has no "
            "place in fairseq's encoder; base and large ELECTRA discriminators (equal sizes) convert")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ConversionError(f"{where}: hidden_size {config['hidden_size']} is not a multiple of "
                              f"num_attention_heads {config['num_attention_heads']}")
    return family


# ----------------------------------------------------------------------------------------------- tokenizer


def _load_tokenizer(hf_dir: str, family: str, config: dict):
    """The ``tokenizers.Tokenizer`` of the folder (``tokenizer.json``, else built from the vocabulary files)."""
    from tokenizers import Tokenizer

    path = os.path.join(hf_dir, "tokenizer.json")
    if os.path.isfile(path):
        return Tokenizer.from_file(path), "tokenizer.json"
    tok_cfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    tok_cfg = _load_json(tok_cfg_path) if os.path.isfile(tok_cfg_path) else {}
    vocab_txt = os.path.join(hf_dir, "vocab.txt")
    if family in ("bert", "electra") and os.path.isfile(vocab_txt):
        from tokenizers.implementations import BertWordPieceTokenizer

        lower = bool(tok_cfg.get("do_lower_case", True))
        strip = tok_cfg.get("strip_accents")
        tok = BertWordPieceTokenizer(vocab_txt, lowercase=lower, strip_accents=strip,
                                     handle_chinese_chars=bool(tok_cfg.get("tokenize_chinese_chars", True)))
        return tok._tokenizer, f"vocab.txt (WordPiece, lowercase={lower})"
    vocab_json, merges = os.path.join(hf_dir, "vocab.json"), os.path.join(hf_dir, "merges.txt")
    if family == "roberta" and os.path.isfile(vocab_json) and os.path.isfile(merges):
        from tokenizers.implementations import ByteLevelBPETokenizer

        tok = ByteLevelBPETokenizer(vocab_json, merges, add_prefix_space=False, trim_offsets=True)
        return tok._tokenizer, "vocab.json + merges.txt (byte-level BPE)"
    raise ConversionError(f"{hf_dir}: no tokenizer.json (nor vocab.txt for BERT/ELECTRA, vocab.json + merges.txt "
                          "for RoBERTa) to tokenize with")


def _special_ids(hf_dir: str, family: str, tokenizer, vocab_size: int) -> Dict[str, int]:
    names = dict(DEFAULT_SPECIALS[family])
    stm = os.path.join(hf_dir, "special_tokens_map.json")
    if os.path.isfile(stm):
        for key, value in _load_json(stm).items():
            if key in SPECIAL_MAP_KEYS:
                names[SPECIAL_MAP_KEYS[key]] = value["content"] if isinstance(value, dict) else value
    ids = {}
    for role, token in names.items():
        i = tokenizer.token_to_id(token)
        if i is None or not 0 <= i < vocab_size:
            if role == "mask":
                ids[role] = None  # no mask token: <mask> gets the unknown row (reported)
                continue
            raise ConversionError(f"{hf_dir}: the tokenizer has no {role} token {token!r} inside the "
                                  f"{vocab_size} embedding rows")
        ids[role] = i
    return ids


# ------------------------------------------------------------------------------------------------- weights


def _namespace(config: dict, family: str) -> Namespace:
    """The ``hf_encoder`` arguments of the converted architecture (dropout off: conversion and tests are eval)."""
    return Namespace(
        arch="hf_encoder",
        encoder_layers=config["num_hidden_layers"],
        encoder_embed_dim=config["hidden_size"],
        encoder_ffn_embed_dim=config["intermediate_size"],
        encoder_attention_heads=config["num_attention_heads"],
        max_positions=config["max_position_embeddings"] - (2 if family == "roberta" else 0),
        activation_fn=ACTIVATIONS[config.get("hidden_act", "gelu")],
        layernorm_eps=float(config.get("layer_norm_eps", 1e-12)),
        dropout=0.0, attention_dropout=0.0,
    )


def fairseq_args(args: Namespace) -> List[str]:
    """The ``fairseq-train`` flags that rebuild the converted architecture."""
    flags = ["--arch", args.arch]
    for name in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                 "max_positions", "activation_fn", "layernorm_eps"):
        value = getattr(args, name)
        flags += ["--" + name.replace("_", "-"), repr(value) if isinstance(value, float) else str(value)]
    return flags


def build_fairseq_encoder(args: Namespace, vocab_size: int):
    """An ``hf_encoder`` model over a dictionary of ``vocab_size`` id symbols plus ``<mask>`` (as the tasks
    load ``dict.txt``)."""
    from fairseq.data import Dictionary

    from .model import HFEncoderModel

    d = Dictionary()
    for i in range(vocab_size):
        d.add_symbol(str(i))
    d.add_symbol("<mask>")
    task = Namespace(source_dictionary=d, target_dictionary=d)
    return HFEncoderModel.build_model(args, task), d


def embedding_rows(specials: Dict[str, Optional[int]], vocab_size: int) -> List[int]:
    """For each fairseq dictionary index, the original row it takes: the four specials, every id, ``<mask>``."""
    mask = specials["mask"] if specials["mask"] is not None else specials["unk"]
    return [specials["cls"], specials["pad"], specials["sep"], specials["unk"]] + list(range(vocab_size)) + [mask]


def fold_token_type(positions: torch.Tensor, token_types: torch.Tensor, first: int) -> None:
    """Add token type 0's embedding to the position rows from ``first`` on (in place)."""
    positions[first:] += token_types[0]


def _convert_weights(config, family, w, specials, template: Dict[str, torch.Tensor]):
    """``(state, report)``: the fairseq state dict (every key of ``template``) and where each tensor went."""
    V, P = config["vocab_size"], config["max_position_embeddings"]
    used, notes, fresh = set(), {}, []
    state = {}

    def take(name):
        if name not in w:
            raise ConversionError(f"the checkpoint has no tensor {name!r}")
        used.add(name)
        return w[name]

    def rows(t):
        return t[torch.tensor(embedding_rows(specials, V))]

    emb = take("embeddings.word_embeddings.weight")
    if emb.shape[0] != V:
        raise ConversionError(f"word embeddings have {emb.shape[0]} rows, config.json says vocab_size {V}")
    state[ENC + "embed_tokens.weight"] = rows(emb)
    pos = take("embeddings.position_embeddings.weight")
    fs_pos = template[ENC + "embed_positions.weight"].clone().zero_()
    if family == "roberta":
        fs_pos.copy_(pos)
        first = config.get("pad_token_id", 1) + 1
    else:
        fs_pos[N_SPECIAL - 2:N_SPECIAL - 2 + P] = pos
        first = 2
    types = w.get("embeddings.token_type_embeddings.weight")
    if types is not None:
        used.add("embeddings.token_type_embeddings.weight")
        fold_token_type(fs_pos, types, first)
        notes["embeddings.token_type_embeddings.weight"] = (
            f"row 0 added to position rows {first}..{fs_pos.shape[0] - 1} (inputs are token type 0)"
            + (f"; rows 1..{types.shape[0] - 1} not converted" if types.shape[0] > 1 else ""))
    state[ENC + "embed_positions.weight"] = fs_pos
    state[ENC + "layernorm_embedding.weight"] = take("embeddings.LayerNorm.weight")
    state[ENC + "layernorm_embedding.bias"] = take("embeddings.LayerNorm.bias")
    for i in range(config["num_hidden_layers"]):
        for hf, fs in LAYER_MAP.items():
            for p in ("weight", "bias"):
                state[f"{ENC}layers.{i}.{fs}.{p}"] = take(f"encoder.layer.{i}.{hf}.{p}")

    # LM head: BERT cls.predictions.*, RoBERTa lm_head.*
    head = None
    if "cls.predictions.transform.dense.weight" in w:
        head = {"dense": "cls.predictions.transform.dense", "layer_norm": "cls.predictions.transform.LayerNorm",
                "bias": "cls.predictions.bias", "decoder": "cls.predictions.decoder"}
    elif "lm_head.dense.weight" in w:
        head = {"dense": "lm_head.dense", "layer_norm": "lm_head.layer_norm", "bias": "lm_head.bias",
                "decoder": "lm_head.decoder"}
    if head is not None:
        for part in ("dense", "layer_norm"):
            for p in ("weight", "bias"):
                state[f"encoder.lm_head.{part}.{p}"] = take(f"{head[part]}.{p}")
        bias_name = head["bias"] if head["bias"] in w else head["decoder"] + ".bias"
        state["encoder.lm_head.bias"] = rows(take(bias_name))
        dec = head["decoder"] + ".weight"
        if dec in w:
            used.add(dec)
            if not torch.equal(w[dec], emb):
                raise ConversionError(f"{dec} differs from the word embeddings: an untied LM head is not supported")
            notes[dec] = "tied to the word embeddings (as fairseq's LM head is)"
        if head["decoder"] + ".bias" in w:
            used.add(head["decoder"] + ".bias")
    state["encoder.lm_head.weight"] = state[ENC + "embed_tokens.weight"]

    for k, v in template.items():
        if k not in state:
            state[k] = v.clone()
            if not k.endswith(".version"):
                fresh.append(k)
    extra = sorted(set(state) - set(template))
    if extra:
        raise ConversionError(f"converted tensors the fairseq model does not have: {extra[:5]}")
    for k, v in template.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ConversionError(f"{k}: converted shape {tuple(state[k].shape)} != fairseq's {tuple(v.shape)}")

    not_converted = {}
    for k in sorted(w):
        if k in used:
            continue
        if k.endswith("position_ids") or k.endswith("token_type_ids"):
            not_converted[k] = "index buffer (fairseq computes positions itself)"
        elif k.startswith("pooler."):
            not_converted[k] = "pooler: fairseq's classification heads start their own dense + tanh layer"
        elif k.startswith("discriminator_predictions."):
            not_converted[k] = "ELECTRA's replaced-token-detection head (pre-training only)"
        elif k.startswith("cls.seq_relationship."):
            not_converted[k] = "BERT's next-sentence head (pre-training only)"
        elif k.startswith(("classifier.", "qa_outputs.", "generator")):
            not_converted[k] = "a task head of the original; fine-tuning here starts its own"
        else:
            raise ConversionError(f"tensor {k!r} {tuple(w[k].shape)} has no place in fairseq's encoder and is not a "
                                  "known head: refusing to drop it silently")
    report = {"tensors_converted": len(used), "notes": notes, "not_converted": not_converted,
              "initialised_fresh": fresh}
    return state, report


# ------------------------------------------------------------------------------------------------- convert


def checkpoint_dict(state, args: Namespace, source: str) -> dict:
    """A checkpoint as fairseq writes one, with a plain-dict config (nothing ``weights_only`` refuses)."""
    model_cfg = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) or v is None}
    model_cfg["_name"] = "hf_encoder"
    return {
        "cfg": {"model": model_cfg, "task": {"_name": "masked_lm", "data": "."}, "common": {},
                "converted_from": source},
        "model": state,
        "optimizer_history": [{"criterion_name": "none", "optimizer_name": "none", "lr_scheduler_state": {},
                               "num_updates": 0}],
        "extra_state": {"train_iterator": {"epoch": 1}},
        "last_optimizer_state": None,
    }


def convert(hf_dir: str, out_dir: str, force: bool = False) -> dict:
    """Convert ``hf_dir`` into ``out_dir`` (built beside it and renamed into place); returns conversion.json."""
    config, weights, weights_file = read_hf_folder(hf_dir)
    if os.path.exists(out_dir) and os.listdir(out_dir) and not force:
        raise ConversionError(f"{out_dir} exists and is not empty (use --force to replace it)")
    family = _check_config(config, hf_dir)
    w = _strip(weights)
    tokenizer, tok_source = _load_tokenizer(hf_dir, family, config)
    V = config["vocab_size"]
    if tokenizer.get_vocab_size(with_added_tokens=True) > V:
        raise ConversionError(f"{hf_dir}: the tokenizer knows {tokenizer.get_vocab_size(with_added_tokens=True)} "
                              f"tokens but the model has {V} embedding rows")
    specials = _special_ids(hf_dir, family, tokenizer, V)
    args = _namespace(config, family)
    flags = fairseq_args(args)  # before build_model fills in the rest of RoBERTa's defaults
    model, _ = build_fairseq_encoder(args, V)
    template = model.state_dict()
    state, report = _convert_weights(config, family, w, specials, template)  # checks keys and shapes

    info = {
        "source": os.path.abspath(hf_dir),
        "weights_file": os.path.basename(weights_file),
        "family": family,
        "hf_architectures": config.get("architectures"),
        "tokenizer_source": tok_source,
        "vocab_size": V,
        "dictionary": "dict.txt symbols are Hugging Face token ids; fairseq index = 4 + id; <s> <pad> </s> <unk> "
                      "carry the rows of the special tokens below, <mask> (added by the tasks, last) the mask row",
        "special_tokens": specials,
        "fairseq_args": flags,
        "dropout": {"--dropout": config.get("hidden_dropout_prob", 0.1),
                    "--attention-dropout": config.get("attention_probs_dropout_prob", 0.1)},
        "layer_norm_eps": float(config.get("layer_norm_eps", 1e-12)),
        **report,
    }
    if specials["mask"] is None:
        info["notes"]["<mask>"] = "the tokenizer has no mask token: <mask> carries the unknown row"

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.tmp.", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # what mkdir would give (mkdtemp makes it private)
    tokenizer.no_truncation()  # a length limit or padding stored with the tokenizer is the pipelines' business
    tokenizer.no_padding()
    try:
        torch.save(checkpoint_dict(state, args, os.path.abspath(hf_dir)), os.path.join(tmp, "model.pt"))
        write_lines_atomic(os.path.join(tmp, "dict.txt"), (f"{i} 1" for i in range(V)))
        tokenizer.save(os.path.join(tmp, "tokenizer.json"))
        write_json_atomic(os.path.join(tmp, "conversion.json"), info)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def load_converted_model(out_dir: str, eval_mode: bool = True):
    """The fairseq model of a converted folder, with its weights (for tests and inspection)."""
    info = _load_json(os.path.join(out_dir, "conversion.json"))
    state = torch.load(os.path.join(out_dir, "model.pt"), map_location="cpu", weights_only=True)
    args = Namespace(**{k: v for k, v in state["cfg"]["model"].items() if k != "_name"})
    model, dictionary = build_fairseq_encoder(args, info["vocab_size"])
    model.load_state_dict(state["model"], strict=True)
    return (model.eval() if eval_mode else model), dictionary, info
