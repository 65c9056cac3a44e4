"""Criterion ``extractive_qa``: cross-entropy of the answer's start and end positions (SQuAD 2.0 style).

The span head scores every position; positions outside the window's context are masked except position 0
(``<s>``), the target of a window that holds no answer. Loss per window = (CE(start) + CE(end)) / 2,
summed over the batch; ``sample_size`` = number of windows, so fairseq divides by it.
Logging outputs are plain sums (loss, ntokens, nsentences, sample_size, ncorrect_start, ncorrect_end,
ncorrect, ncorrect_noans, n_noans), so they can be summed across workers and sub-batches.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

MASKED = -1e9


def valid_positions(context_range: torch.Tensor, length: int) -> torch.Tensor:
    """Bool ``(B, T)``: position 0 and the context positions ``[range[:,0], range[:,1])``."""
    pos = torch.arange(length, device=context_range.device).unsqueeze(0)
    mask = (pos >= context_range[:, :1]) & (pos < context_range[:, 1:2])
    mask[:, 0] = True
    return mask


def masked_span_logits(logits: torch.Tensor, context_range: torch.Tensor):
    """Split ``(B, T, 2)`` head output into fp32 start/end logits with invalid positions masked."""
    logits = logits.float()
    mask = valid_positions(context_range, logits.size(1))
    start = logits[..., 0].masked_fill(~mask, MASKED)
    end = logits[..., 1].masked_fill(~mask, MASKED)
    return start, end


def span_head_name(task) -> str:
    cfg = getattr(task, "cfg", None)
    return getattr(cfg, "span_head_name", None) or "qa_span"


@dataclass
class ExtractiveQACriterionConfig(FairseqDataclass):
    pass


@register_criterion("extractive_qa", dataclass=ExtractiveQACriterionConfig)
class ExtractiveQACriterion(FairseqCriterion):
    """Mean of the start and end cross-entropies; the head is the task's ``--span-head-name``."""

    def __init__(self, cfg: ExtractiveQACriterionConfig, task):
        super().__init__(task)
        self.head_name = span_head_name(task)

    def forward(self, model, sample, reduce=True):
        heads = getattr(model, "classification_heads", None)
        if heads is None or self.head_name not in heads:
            raise ValueError(f"model has no span head {self.head_name!r}: use --task extractive_qa "
                             "(its build_model registers it) with a RoBERTa-family --arch")
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=self.head_name)
        start_logits, end_logits = masked_span_logits(logits, sample["context_range"])
        target = sample["target"]
        t_start, t_end = target[:, 0], target[:, 1]
        reduction = "sum" if reduce else "none"
        loss = 0.5 * (F.cross_entropy(start_logits, t_start, reduction=reduction)
                      + F.cross_entropy(end_logits, t_end, reduction=reduction))
        sample_size = t_start.numel()
        with torch.no_grad():
            ok_start = start_logits.argmax(-1) == t_start
            ok_end = end_logits.argmax(-1) == t_end
            noans = t_start == 0
        logging_output = {
            "loss": loss.data.sum().item() if reduce else loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample_size,
            "sample_size": sample_size,
            "ncorrect_start": int(ok_start.sum()),
            "ncorrect_end": int(ok_end.sum()),
            "ncorrect": int((ok_start & ok_end).sum()),
            "n_noans": int(noans.sum()),
            "ncorrect_noans": int((ok_start & ok_end & noans).sum()),
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        loss_sum = total("loss")
        sample_size = total("sample_size")
        nsentences = total("nsentences")
        metrics.log_scalar("loss", loss_sum / max(sample_size, 1) / math.log(2), sample_size, round=3)
        if nsentences and any("ncorrect" in log for log in logging_outputs):
            metrics.log_scalar("accuracy", 100.0 * total("ncorrect") / nsentences, nsentences, round=1)
            metrics.log_scalar("start_acc", 100.0 * total("ncorrect_start") / nsentences, nsentences, round=1)
            metrics.log_scalar("end_acc", 100.0 * total("ncorrect_end") / nsentences, nsentences, round=1)
            n_noans = total("n_noans")
            if n_noans:
                metrics.log_scalar("noans_acc", 100.0 * total("ncorrect_noans") / n_noans, n_noans, round=1)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
