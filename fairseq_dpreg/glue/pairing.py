"""Start-up checks that a run pairs a ``*_dpreg`` task with a ``dpreg_*`` optimizer, and reads the run's
precision settings. Neither side imports the other: a task says it runs the passes with the class attribute
``dpreg_runs_passes``, an optimizer is recognised by its registered name."""
from fairseq.tasks import TASK_REGISTRY


class StartupError(SystemExit, ValueError):
    """A configuration error found at start-up. Uncaught, it ends the run with one line naming what to change,
    as fairseq's own argparse errors do, and no traceback; code that builds tasks or optimizers itself can
    catch it as a ValueError."""

    def __init__(self, message):
        super().__init__(f"fairseq-train: error: {message}")


def root_config(cfg):
    """The whole run's config above a task's or optimizer's node (omegaconf), or None."""
    try:
        node = cfg
        while node is not None and node._get_parent() is not None:
            node = node._get_parent()
        return node if node is not cfg else None
    except AttributeError:
        return None


def optimizer_name(root):
    try:
        opt = root.get("optimizer", None)
    except Exception:
        return None
    if opt is None:
        return None
    return getattr(opt, "_name", None) or (opt.get("_name", None) if hasattr(opt, "get") else None)


def check_optimizer_for_task(root, task_name):
    """A *_dpreg task needs a dpreg_* optimizer (which carries the --dpreg-* flags and the skip path); ``root``
    is the run's whole config (``root_config``), or None."""
    name = None if root is None else optimizer_name(root)
    if name is not None and not str(name).startswith("dpreg_"):
        raise StartupError(f"--task {task_name} runs the dot-product regularizer and needs a dpreg_* optimizer: use "
                           f"--optimizer dpreg_{name} (it takes {name}'s flags unchanged)")


def check_task_for_optimizer(optimizer_cfg, optimizer_class):
    """A dpreg_* optimizer needs a task that runs the regularizer's passes, else nothing would run them."""
    name = getattr(optimizer_cfg, "task", None)  # a legacy optimizer gets the whole argparse Namespace
    if not isinstance(name, str):
        root = root_config(optimizer_cfg)
        task = root.get("task", None) if root is not None else None
        name = getattr(task, "_name", None) if task is not None else None
    cls = TASK_REGISTRY.get(name) if name else None
    if cls is not None and not getattr(cls, "dpreg_runs_passes", False):
        suggestion = f"--task {name}_dpreg" if f"{name}_dpreg" in TASK_REGISTRY else (
            f"a task with DpregTaskMixin (see fairseq_dpreg/glue/tasks.py; {name} has no _dpreg variant yet)")
        raise StartupError(f"optimizer {optimizer_class} needs a task that runs the regularizer's passes: use "
                           f"{suggestion}, or the plain optimizer for plain training")


def check_precision(root):
    """fairseq 0.12's --bf16 is a TPU mode: it sets --tpu and the trainer then imports torch_xla. Say so at
    start-up, with the GPU alternative, instead of a traceback from deep inside the trainer."""
    common = root.get("common", None) if root is not None else None
    if common is None or not (common.get("bf16", False) or common.get("memory_efficient_bf16", False)):
        return
    try:
        import torch_xla  # noqa: F401
    except ImportError:
        raise StartupError("--bf16 / --memory-efficient-bf16: in fairseq 0.12 these mean TPU training (they set "
                           "--tpu, which needs torch_xla); on GPUs use --amp (fp32 weights, fp16 autocast), which "
                           "the regularizer supports") from None
