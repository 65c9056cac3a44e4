"""Answer prediction for ``extractive_qa`` models: best span per window, then per question.

Per window, the best span is the ``(i, j)`` maximising ``start[i] + end[j]`` over context positions with
``i <= j < i + max_answer_len`` (exhaustive search; whitespace-only tokens cannot start or end a span), and
the no-answer score is ``start[0] + end[0]``. Per question, over all its windows (and, for MRQA data with
several passages per question, all its contexts): the best span score and the *lowest* no-answer score
(as in BERT's SQuAD 2.0 code: a question is unanswerable only if no window finds its answer). The answer
is the empty string when ``null - best > null_threshold`` (never with ``force_answer``); the no-answer
probability written for the official evaluator is ``sigmoid(null - best)``.

Answer text is ``context[first_token_start:last_token_end]``: an exact substring of the original context.
"""

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .criterion import masked_span_logits, span_head_name
from .data import QADataError, write_text_atomic
from .task import read_jsonl, split_paths

logger = logging.getLogger(__name__)


@dataclass
class SpanChoice:
    score: float
    null_score: float
    window: int
    first: int  # context token index within the window (inclusive)
    last: int


def best_span_in_window(start: np.ndarray, end: np.ndarray, ctx_start: int, offsets: List[List[int]],
                        max_answer_len: int) -> Optional[Tuple[float, int, int]]:
    """Best ``(score, first, last)`` (context-token indices) or None if the window has no usable token."""
    n = len(offsets)
    if n == 0:
        return None
    s = np.asarray(start[ctx_start:ctx_start + n], dtype=np.float64).copy()
    e = np.asarray(end[ctx_start:ctx_start + n], dtype=np.float64).copy()
    usable = np.array([o[1] > o[0] for o in offsets], dtype=bool)
    if not usable.any():
        return None
    s[~usable] = -np.inf
    e[~usable] = -np.inf
    width = max(1, min(max_answer_len, n))
    padded = np.concatenate([e, np.full(width - 1, -np.inf)])
    # ends[i, k] = e[i + k]: spans starting at i of length k + 1
    ends = np.lib.stride_tricks.sliding_window_view(padded, width)[:n]
    scores = s[:, None] + ends
    flat = int(np.argmax(scores))
    first, k = divmod(flat, width)
    best = float(scores[first, k])
    if not math.isfinite(best):
        return None
    return best, first, first + k


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def load_split_meta(data_dir: str, split: str):
    """``(windows, questions, contexts)`` as written by ``write_split`` (contexts: ``{"text", "offsets"}``)."""
    paths = split_paths(data_dir, split)
    for key in ("windows", "questions", "contexts"):
        if not os.path.isfile(paths[key]):
            raise FileNotFoundError(f"{paths[key]}: missing (re-run scripts/qa_prepare.py)")
    return read_jsonl(paths["windows"]), read_jsonl(paths["questions"]), read_jsonl(paths["contexts"])


def window_offsets(meta: dict, contexts: List[dict]) -> List[List[int]]:
    """Character spans of a window's context tokens."""
    return contexts[meta["ctx"]]["offsets"][meta["tok_start"]:meta["tok_start"] + meta["n"]]


def decide(windows, contexts, logits: Dict[int, Tuple[np.ndarray, np.ndarray]], qids: List[str],
           max_answer_len: int = 30, null_threshold: float = 0.0, force_answer: bool = False):
    """Predictions ``{qid: text}`` and no-answer probabilities ``{qid: p}`` from per-window logits.

    ``windows``/``contexts``: from :func:`load_split_meta`; ``logits[w]``: start and end scores of window w.
    """
    best: Dict[str, SpanChoice] = {}
    null: Dict[str, float] = {}
    for w, meta in enumerate(windows):
        if w not in logits:
            raise QADataError(f"window {w} (question {meta['qid']!r}) has no model output")
        start, end = logits[w]
        qid = meta["qid"]
        null_score = float(start[0] + end[0])
        null[qid] = min(null.get(qid, math.inf), null_score)
        found = best_span_in_window(start, end, meta["ctx_start"], window_offsets(meta, contexts), max_answer_len)
        if found is not None and (qid not in best or found[0] > best[qid].score):
            best[qid] = SpanChoice(found[0], null_score, w, found[1], found[2])
    preds, na_probs = {}, {}
    for qid in qids:
        choice = best.get(qid)
        if choice is None:
            preds[qid], na_probs[qid] = "", 1.0
            continue
        meta = windows[choice.window]
        offsets = window_offsets(meta, contexts)
        s = offsets[choice.first][0]
        e = max(o[1] for o in offsets[choice.first:choice.last + 1])
        text = contexts[meta["ctx"]]["text"][s:e]
        diff = null.get(qid, -math.inf) - choice.score
        na_probs[qid] = _sigmoid(diff)
        preds[qid] = "" if (diff > null_threshold and not force_answer) else text
    return preds, na_probs


def load_model_and_task(checkpoint: str, data_dir: Optional[str] = None, user_dir: Optional[str] = None):
    """Load an extractive_qa checkpoint (any ``*_dpreg`` variant is loaded as plain ``extractive_qa``)."""
    from fairseq import checkpoint_utils, utils
    from omegaconf import open_dict

    from ..glue import models  # noqa: F401  (registers --arch hf_encoder)
    from . import criterion, task  # noqa: F401  (registers extractive_qa)

    if user_dir:
        utils.import_user_module(type("Args", (), {"user_dir": user_dir})())
    state = checkpoint_utils.load_checkpoint_to_cpu(checkpoint)
    cfg = state["cfg"]
    with open_dict(cfg):
        if cfg.task._name.startswith("extractive_qa"):
            cfg.task._name = "extractive_qa"
        if data_dir:
            cfg.task.data = data_dir
    models, _cfg, qa_task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], state=state)
    return models[0], qa_task


@torch.no_grad()
def run_model(model, qa_task, split: str, batch_size: int = 32, device: str = "cpu", fp16: bool = False):
    """Start/end logits per window, as numpy arrays keyed by window index."""
    qa_task.load_dataset(split)
    dataset = qa_task.dataset(split)
    head = span_head_name(qa_task)
    model.eval()
    model.to(device)
    if fp16:
        model.half()
    order = np.argsort(dataset.sizes, kind="mergesort")
    out: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    for b in range(0, len(order), batch_size):
        sample = dataset.collater([dataset[int(i)] for i in order[b:b + batch_size]])
        net_input = {k: v.to(device) for k, v in sample["net_input"].items()}
        logits, _ = model(**net_input, features_only=True, classification_head_name=head)
        start, end = masked_span_logits(logits, sample["context_range"].to(device))
        start, end = start.cpu().numpy(), end.cpu().numpy()
        lengths = sample["net_input"]["src_lengths"].tolist()
        for row, idx in enumerate(sample["id"].tolist()):
            out[idx] = (start[row, :lengths[row]], end[row, :lengths[row]])
    return out


def write_json_atomic(path: str, obj):
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def predict_split(checkpoint: str, data_dir: str, split: str = "valid", out: Optional[str] = None,
                  na_prob_out: Optional[str] = None, batch_size: int = 32, max_answer_len: int = 30,
                  null_threshold: float = 0.0, force_answer: bool = False, device: Optional[str] = None,
                  fp16: bool = False, user_dir: Optional[str] = None):
    """Predict every question of ``split`` in ``data_dir``; write the JSON files when paths are given."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    windows, questions, contexts = load_split_meta(data_dir, split)
    model, qa_task = load_model_and_task(checkpoint, data_dir, user_dir)
    logits = run_model(model, qa_task, split, batch_size=batch_size, device=device, fp16=fp16)
    if len(logits) != len(windows):
        raise QADataError(f"{data_dir}/{split}: {len(windows)} windows in the metadata but {len(logits)} in the data")
    qids = list(dict.fromkeys(q["qid"] for q in questions))
    preds, na_probs = decide(windows, contexts, logits, qids, max_answer_len=max_answer_len,
                             null_threshold=null_threshold, force_answer=force_answer)
    if out:
        write_json_atomic(out, preds)
    if na_prob_out:
        write_json_atomic(na_prob_out, na_probs)
    return preds, na_probs
