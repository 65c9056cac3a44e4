"""SuperGLUE: released jsonl -> raw-text fairseq inputs (``prepare``) and the standard metrics (``metrics``).

Pure Python (no fairseq import). Task framing and file layout: :mod:`fairseq_dpreg.superglue.tasks`.
"""

from .metrics import accuracy, class_f1, evaluate, macro_f1, multirc_scores, record_scores
from .prepare import prepare_split, prepare_task
from .tasks import TASKS, Example, SuperGLUEError, build_examples, get_task

__all__ = [
    "TASKS",
    "Example",
    "SuperGLUEError",
    "accuracy",
    "build_examples",
    "class_f1",
    "evaluate",
    "get_task",
    "macro_f1",
    "multirc_scores",
    "prepare_split",
    "prepare_task",
    "record_scores",
]
