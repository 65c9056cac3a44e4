"""fairseq task ``extractive_qa`` (and ``extractive_qa_dpreg``) plus the binarized data format it reads.

Data directory (written by ``scripts/qa_prepare.py``, read by the task and by ``scripts/qa_predict.py``):

- ``dict.txt``: the fairseq dictionary (SentencePiece pieces, or RoBERTa's dict.txt for GPT-2 BPE);
  the task adds ``<mask>`` like fairseq's RoBERTa tasks, so pretrained embeddings line up.
- ``{split}.bin`` / ``{split}.idx``: one window per item, ``<s> question </s> </s> context </s>``.
- ``{split}.spans.npy``: int64 ``(windows, 4)``: answer start, answer end (inclusive; 0/0 = no answer in
  this window), first context position, end of the context positions (exclusive).
- ``{split}.windows.jsonl``: per window ``qid``, ``ctx`` (context index), ``ctx_start`` (position of the
  first context token in the window), ``tok_start`` and ``n`` (which context tokens it holds);
  ``{split}.contexts.jsonl``: per context its ``text`` and its tokens' character ``offsets``;
  ``{split}.questions.jsonl``: ``qid``, ``ctx``, ``answers``, ``is_impossible``. Prediction needs these to
  return answer strings. ``qa_prepare.json``: the settings used.

A batch is ``{"id", "nsentences", "ntokens", "net_input": {"src_tokens", "src_lengths"}, "target": (B, 2)
start/end positions, "context_range": (B, 2)}``; every tensor but ``net_input``'s has the batch first.
"""

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, data_utils, indexed_dataset
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import MISSING, OmegaConf, open_dict

from .data import QADataError, QAExample, write_jsonl_atomic, write_text_atomic
from .model import register_span_head
from .tokenization import Feature

logger = logging.getLogger(__name__)

SETTINGS_FILE = "qa_prepare.json"


# ----------------------------------------------------------------------------------------------------
# on-disk format


def split_paths(data_dir: str, split: str) -> dict:
    base = os.path.join(data_dir, split)
    return {
        "tokens": base,
        "spans": base + ".spans.npy",
        "windows": base + ".windows.jsonl",
        "questions": base + ".questions.jsonl",
        "contexts": base + ".contexts.jsonl",
    }


def write_split(data_dir: str, split: str, examples: Sequence[QAExample], features: Sequence[Feature],
                dictionary: Dictionary) -> dict:
    """Binarize ``features`` (windows of ``examples``) into ``data_dir`` as split ``split``."""
    os.makedirs(data_dir, exist_ok=True)
    paths = split_paths(data_dir, split)
    if not features:
        raise QADataError(f"split {split!r}: no windows to write (empty input?)")
    builder = indexed_dataset.make_builder(
        indexed_dataset.data_file_path(paths["tokens"]), impl="mmap", vocab_size=len(dictionary)
    )
    spans = np.zeros((len(features), 4), dtype=np.int64)
    n_tok = n_unk = 0
    unk = dictionary.unk()
    windows = []
    ctx_offsets = {}
    for i, f in enumerate(features):
        ids = [dictionary.index(s) for s in f.symbols]
        n_tok += len(ids)
        n_unk += sum(1 for x in ids if x == unk)
        builder.add_item(torch.tensor(ids, dtype=torch.int64))
        spans[i] = (f.start, f.end, f.ctx_start, f.ctx_end)
        windows.append({"qid": f.qid, "ctx": f.context_id, "ctx_start": f.ctx_start,
                        "tok_start": f.window_start, "n": len(f.ctx_offsets)})
        # windows cover every context token, so together they give the context's full offset list
        offsets = ctx_offsets.setdefault(f.context_id, [])
        if len(offsets) < f.window_start + len(f.ctx_offsets):
            offsets.extend([None] * (f.window_start + len(f.ctx_offsets) - len(offsets)))
        offsets[f.window_start:f.window_start + len(f.ctx_offsets)] = [list(o) for o in f.ctx_offsets]
    builder.finalize(indexed_dataset.index_file_path(paths["tokens"]))
    np.save(paths["spans"], spans)
    write_jsonl_atomic(paths["windows"], windows)
    write_jsonl_atomic(paths["questions"], [
        {"qid": ex.qid, "ctx": ex.context_id, "answers": [a.text for a in ex.answers],
         "is_impossible": ex.is_impossible} for ex in examples
    ])
    contexts = {}
    for ex in examples:
        contexts.setdefault(ex.context_id, ex.context)
    if sorted(contexts) != list(range(len(contexts))):
        raise AssertionError("context ids must be 0..n-1")
    for cid, offsets in ctx_offsets.items():
        if any(o is None for o in offsets):
            raise AssertionError(f"context {cid}: windows do not cover every token")
    write_jsonl_atomic(paths["contexts"], [{"text": contexts[i], "offsets": ctx_offsets.get(i, [])}
                                           for i in range(len(contexts))])
    info = {"windows": len(features), "questions": len({ex.qid for ex in examples}),
            "windows_with_answer": int((spans[:, 0] > 0).sum()), "tokens": n_tok,
            "unk_rate": round(n_unk / max(n_tok, 1), 5), "max_len": int(max(len(f.symbols) for f in features))}
    logger.info("%s: %s", split, info)
    return info


def write_settings(data_dir: str, settings: dict):
    write_text_atomic(os.path.join(data_dir, SETTINGS_FILE), json.dumps(settings, indent=2, ensure_ascii=False) + "\n")


def read_jsonl(path: str) -> List[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class ExtractiveQADataset(FairseqDataset):
    """Windows (token ids) with their answer positions; batches are right-padded."""

    def __init__(self, tokens, spans: np.ndarray, pad_idx: int, shuffle: bool = True):
        if len(tokens) != len(spans):
            raise QADataError(f"{len(tokens)} token windows but {len(spans)} answer spans")
        self.tokens = tokens
        self.spans = np.asarray(spans, dtype=np.int64)
        self.sizes = np.asarray(tokens.sizes, dtype=np.int64)
        self.pad_idx = pad_idx
        self.shuffle = shuffle
        bad = (self.spans[:, 2] < 1) | (self.spans[:, 3] > self.sizes) | (self.spans[:, 3] < self.spans[:, 2])
        has = self.spans[:, 0] > 0
        bad |= has & ((self.spans[:, 0] < self.spans[:, 2]) | (self.spans[:, 1] >= self.spans[:, 3])
                      | (self.spans[:, 1] < self.spans[:, 0]))
        bad |= ~has & (self.spans[:, 1] != 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise QADataError(f"window {i}: inconsistent answer/context positions {self.spans[i].tolist()} "
                              f"for a window of {self.sizes[i]} tokens")

    def __getitem__(self, index):
        return {"id": index, "source": self.tokens[index].long(), "span": torch.from_numpy(self.spans[index])}

    def __len__(self):
        return len(self.sizes)

    def collater(self, samples):
        if len(samples) == 0:
            return {}
        src = data_utils.collate_tokens([s["source"] for s in samples], self.pad_idx, left_pad=False)
        lengths = torch.tensor([s["source"].numel() for s in samples], dtype=torch.long)
        spans = torch.stack([s["span"] for s in samples])
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": int(lengths.sum()),
            "net_input": {"src_tokens": src, "src_lengths": lengths},
            "target": spans[:, :2].contiguous(),
            "context_range": spans[:, 2:].contiguous(),
        }

    def num_tokens(self, index):
        return int(self.sizes[index])

    def num_tokens_vec(self, indices):
        return self.sizes[indices]

    def size(self, index):
        return int(self.sizes[index])

    def ordered_indices(self):
        # the caller seeds numpy (fairseq's get_batch_iterator uses numpy_seed(seed))
        order = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        return order[np.argsort(self.sizes[order], kind="mergesort")]

    @property
    def supports_prefetch(self):
        return False


def load_qa_split(data_dir: str, split: str, dictionary: Dictionary, shuffle: bool) -> ExtractiveQADataset:
    paths = split_paths(data_dir, split)
    if not indexed_dataset.dataset_exists(paths["tokens"], impl="mmap"):
        raise FileNotFoundError(f"{paths['tokens']}.bin/.idx: split {split!r} not found in {data_dir} "
                                "(make it with scripts/qa_prepare.py)")
    if not os.path.isfile(paths["spans"]):
        raise FileNotFoundError(f"{paths['spans']}: missing (re-run scripts/qa_prepare.py)")
    tokens = indexed_dataset.MMapIndexedDataset(paths["tokens"])
    spans = np.load(paths["spans"])
    return ExtractiveQADataset(tokens, spans, dictionary.pad(), shuffle=shuffle)


# ----------------------------------------------------------------------------------------------------
# task


@dataclass
class ExtractiveQAConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={
        "help": "data directory made by scripts/qa_prepare.py (dict.txt, {split}.bin/.idx, {split}.spans.npy, ...)"})
    max_positions: int = field(default=512, metadata={
        "help": "longest input the model accepts (its positional embeddings); every window written by "
                "qa_prepare.py --max-seq-len must fit, else loading the split fails"})
    span_head_name: str = field(default="qa_span", metadata={
        "help": "name of the span head (model.classification_heads.<name>; kept in checkpoints)"})
    span_head_inner_dim: int = field(default=0, metadata={
        "help": "inner size of the span head's dense layer (0 = the encoder's hidden size)"})
    no_shuffle: bool = field(default=False, metadata={"help": "do not shuffle the training windows"})


@register_task("extractive_qa", dataclass=ExtractiveQAConfig)
class ExtractiveQATask(FairseqTask):
    """Extractive QA (SQuAD 2.0 style): predict the start and end token of the answer in the context, or
    position 0 when the window holds no answer. Use with ``--criterion extractive_qa`` and a RoBERTa-family
    ``--arch``; predictions come from ``scripts/qa_predict.py``."""

    def __init__(self, cfg: ExtractiveQAConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary

    @classmethod
    def load_dictionary(cls, filename):
        dictionary = Dictionary.load(filename)
        dictionary.add_symbol("<mask>")
        return dictionary

    @classmethod
    def setup_task(cls, cfg: ExtractiveQAConfig, **kwargs):
        data_dir = cfg.data.split(os.pathsep)[0]
        dict_path = os.path.join(data_dir, "dict.txt")
        if not os.path.isfile(dict_path):
            raise FileNotFoundError(f"{dict_path}: missing; --data must be a directory made by scripts/qa_prepare.py")
        dictionary = cls.load_dictionary(dict_path)
        logger.info("dictionary: %d types", len(dictionary))
        return cls(cfg, dictionary)

    @property
    def data_dir(self) -> str:
        return self.cfg.data.split(os.pathsep)[0]

    def load_dataset(self, split, combine=False, epoch=1, **kwargs):
        dataset = load_qa_split(self.data_dir, split, self.dictionary, shuffle=not self.cfg.no_shuffle)
        longest = int(dataset.sizes.max()) if len(dataset) else 0
        if longest > self.cfg.max_positions:
            raise QADataError(f"{self.data_dir}/{split}: a window has {longest} tokens but --max-positions is "
                              f"{self.cfg.max_positions}; re-run qa_prepare.py with --max-seq-len <= "
                              f"{self.cfg.max_positions}")
        logger.info("%s: %d windows", split, len(dataset))
        self.datasets[split] = dataset
        return dataset

    def build_model(self, cfg, from_checkpoint=False):
        from fairseq import models

        with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.ExitStack():
            cfg.max_positions = self.cfg.max_positions
        model = models.build_model(cfg, self, from_checkpoint)
        register_span_head(model, self.cfg.span_head_name, self.cfg.span_head_inner_dim)
        return model

    def max_positions(self):
        return self.cfg.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary


def _dpreg_task_mixin():
    """The plugin's DpregTaskMixin, or None while ``fairseq_dpreg.glue.task`` does not exist."""
    try:
        from fairseq_dpreg.glue.task import DpregTaskMixin
    except ModuleNotFoundError as e:
        if e.name in ("fairseq_dpreg.glue.task", "fairseq_dpreg.glue"):
            logger.debug("fairseq_dpreg.glue.task not found: extractive_qa_dpreg not registered")
            return None
        raise
    return DpregTaskMixin


DpregTaskMixin = _dpreg_task_mixin()
ExtractiveQADpregTask: Optional[type] = None

if DpregTaskMixin is not None:

    @register_task("extractive_qa_dpreg", dataclass=ExtractiveQAConfig)
    class ExtractiveQADpregTask(DpregTaskMixin, ExtractiveQATask):  # noqa: F811
        """``extractive_qa`` trained with the gradient dot-product regularizer (``--optimizer dpreg_*``)."""

        def dpreg_count_tokens(self, half, full):
            # the target is (start, end) positions, not tokens: count the half's input tokens
            return int(half["net_input"]["src_lengths"].sum())
