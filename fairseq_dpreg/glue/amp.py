"""The second narrow adjustment the plugin makes to fairseq: ``--amp`` unscales the gradients once, and its
checkpoints hold the wrapped optimizer's state and the loss scale.

fairseq 0.12's ``AMPOptimizer.clip_grad_norm`` unscales the torch optimizer's gradients
(``scaler.unscale_(self.optimizer)``), but ``step`` hands GradScaler a different object, the fairseq optimizer
(``scaler.step(self.fp32_optimizer)``). GradScaler keeps its "already unscaled" mark per object, so it
unscales the same gradients a second time: every amp update is divided by the loss scale once too often (an
SGD step of lr 1 moves a parameter by g / 128 instead of g; Adam hides most of it, up to its epsilon). This
affects plain and regularized runs alike. The class fairseq builds for ``--amp`` is replaced by a subclass
that unscales the object it later steps, so the update is divided exactly once.

The stock class also saves only the torch optimizer's state: the fairseq optimizer it wraps (a ``dpreg_*``
optimizer keeps the plugin's counters there) and GradScaler's scale are lost at every checkpoint, so a resumed
run restarts its loss scale. The subclass saves both (``--fp16`` already keeps its ``loss_scale``).
"""
import logging

import torch
from fairseq import optim
from fairseq.optim.amp_optimizer import AMPOptimizer

logger = logging.getLogger(__name__)


class UnscaleOnceAMPOptimizer(AMPOptimizer):
    def clip_grad_norm(self, max_norm, aggregate_norm_fn=None):
        self.scaler.unscale_(self.fp32_optimizer)  # the object step() gives to scaler.step
        grad_norm = self.fp32_optimizer.clip_grad_norm(max_norm, aggregate_norm_fn)
        if not torch.isfinite(grad_norm).all():
            new_loss_scale = self.next_loss_scale
            if new_loss_scale <= self.min_loss_scale:
                raise FloatingPointError(
                    f"AMP: Minimum loss scale reached ({self.min_loss_scale}). Your loss is probably exploding. "
                    f"Try restarting training or use fp32. {new_loss_scale}"
                )
            logger.info(f"AMP: overflow detected, setting scale to {new_loss_scale}")
        return grad_norm

    def state_dict(self):
        state = self.fp32_optimizer.state_dict()
        state["amp_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state_dict, optimizer_overrides=None):
        state_dict = dict(state_dict)
        scaler = state_dict.pop("amp_scaler", None)
        if scaler:
            self.scaler.load_state_dict(scaler)
        self.fp32_optimizer.load_state_dict(state_dict, optimizer_overrides)


if optim.AMPOptimizer is AMPOptimizer:
    optim.AMPOptimizer = UnscaleOnceAMPOptimizer
