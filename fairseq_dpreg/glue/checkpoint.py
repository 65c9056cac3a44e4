"""fairseq checkpoints: loadable under torch.load(weights_only=True), and never left half-copied.

1. torch >= 2.6 loads with weights_only=True: the type fairseq's checkpoints hold beside tensors and plain
   containers is added to torch's safe globals at import (``fairseq_dpreg.checkpoint_io``); weights_only stays on.
2. fairseq 0.12's ``save_checkpoint`` writes its first checkpoint file atomically (``.tmp`` + rename), then
   makes the others (``checkpoint_last.pt``, ``checkpoint_best.pt``) with ``PathManager.copy``, a plain
   ``shutil.copyfile`` onto the target. A run stopped during that copy (Ctrl-C, SIGTERM from a scheduler)
   leaves a truncated ``checkpoint_last.pt`` in place of the good one, and the next run cannot resume. The
   ``PathManager`` that ``checkpoint_utils`` uses is given a copy that writes a temporary file beside the
   target and renames it into place (``fairseq_dpreg.atomic``): the target is either the old file or the
   whole new one. Remote paths (an iopath handler) are left to fairseq.
3. :func:`load_for_inference`: a checkpoint trained with or without the plugin, in eval mode, for the
   project's scripts that read one (SuperGLUE prediction, gradient alignment).
"""
import shutil

from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

from ..atomic import atomic_open
from ..checkpoint_io import allow_fairseq_checkpoints


class AtomicCopyPathManager(PathManager):
    @staticmethod
    def copy(src_path, dst_path, overwrite=False):
        if PathManager.path_requires_pathmanager(src_path) or PathManager.path_requires_pathmanager(dst_path):
            return PathManager.copy(src_path, dst_path, overwrite=overwrite)
        with open(src_path, "rb") as src, atomic_open(dst_path, "wb") as dst:
            shutil.copyfileobj(src, dst, 16 << 20)
        return True


def load_for_inference(path, data):
    """(model in eval mode, cfg, task) of the checkpoint ``path``, its task reading the data folder ``data``."""
    from . import tasks  # noqa: F401  (the *_dpreg tasks a plugin checkpoint names)
    from ..qa import criterion, task  # noqa: F401  (extractive_qa[_dpreg] and the criterion extractive_qa)

    models, cfg, fs_task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": data})
    return models[0].eval(), cfg, fs_task


allow_fairseq_checkpoints()
if checkpoint_utils.PathManager is PathManager:
    checkpoint_utils.PathManager = AtomicCopyPathManager
