"""Release a checkpoint trained with the plugin as a stock fairseq checkpoint (``scripts/export_checkpoint.py``).

A checkpoint written by ``fairseq-train --user-dir fairseq_dpreg --task X_dpreg --optimizer dpreg_Y`` names the
plugin's task and optimizer, holds its flags and state, and (like every checkpoint fairseq 0.12 writes for a
command-line model) keeps the model's arguments as an ``argparse.Namespace``. Plain fairseq cannot load it:
under torch >= 2.6 ``torch.load`` (weights_only=True by default) refuses the Namespace, and with it allowed the
task is unknown ("Could not infer task type from {'_name': 'translation_dpreg', ...}").

:func:`export_checkpoint` rewrites it for stock fairseq: the stock task and optimizer names, no ``dpreg_*``
flag, no user dir, none of the plugin's state (the optimizer's ``dpreg`` counters, the amp scaler it adds, its
``dpreg_*`` meters), and only plain containers (dict, list, tuple, str, numbers, None, tensors) so that the
file loads with ``torch.load(weights_only=True)`` in a process that never imported the plugin. Tasks, models,
criteria and optimizers without a faithful stock equivalent are refused, with the reason.

This module imports fairseq only to read its registries (which names stock fairseq knows).
"""
import argparse
import collections
import contextlib
import os
import pickletools
import zipfile

import torch

from .atomic import atomic_open

__all__ = ["ExportError", "export_checkpoint", "export_state", "main", "pickle_globals", "stock_names"]

# The plugin's tasks (fairseq_dpreg/glue/tasks.py) -> the stock task each one puts the mixin in front of; the
# plugin's QA task and criterion (fairseq_dpreg/qa) have none and are refused.
TASKS = {
    "translation_dpreg": "translation",
    "sentence_prediction_dpreg": "sentence_prediction",
    "sentence_ranking_dpreg": "sentence_ranking",
}
QA_WHY = ("extractive question answering is the plugin's own task (fairseq_dpreg/qa): stock fairseq has no task "
          "that reads answer spans, and the span head it adds to the model is the plugin's code; use the model "
          "with the plugin (--user-dir fairseq_dpreg)")
REFUSED_TASKS = {"extractive_qa": QA_WHY, "extractive_qa_dpreg": QA_WHY}
REFUSED_CRITERIA = {"extractive_qa": QA_WHY}
# Wrapper class names written to optimizer_history by the plugin -> the stock class they wrap.
OPTIMIZER_CLASSES = {"UnscaleOnceAMPOptimizer": "AMPOptimizer"}
PLUGIN_OPTIMIZER_STATE = ("dpreg", "amp_scaler")  # keys the plugin adds to an optimizer's state_dict
STOCK_LAYERNORM_EPS = 1e-5  # fairseq's LayerNorm
# The plugin's architectures that are a stock model plus a layer-norm epsilon (fairseq_dpreg/pretrained):
# hf_encoder is RobertaModel with --layernorm-eps on every layer norm; transformer_warm is TransformerModel
# with it on the encoder's (and --encoder-init, used once at the start of training and cleared). At eps 1e-5
# each is exactly the stock model; at any other eps (1e-12 for BERT-family encoders) no stock model computes
# the same thing, and the export is refused. Value: (stock model = architecture, plugin-only fields).
EPS_ARCHS = {"hf_encoder": ("roberta", ("layernorm_eps", "sentence_pair_encoding")),
             "transformer_warm": ("transformer", ("layernorm_eps", "encoder_init"))}
# Architectures (by name prefix) that fairseq ships but registers only when their folder is the --user-dir (the
# plugin imports it for you): the export keeps them, and the loader needs that folder of fairseq's.
FAIRSEQ_USER_DIR_ARCHS = {"transformer_pointer_generator": "examples/pointer_generator/pointer_generator_src"}


class ExportError(ValueError):
    """A checkpoint that cannot be exported (the message names the file and what is wrong)."""


def _stock_module(module):
    return module.startswith("fairseq.") and not module.startswith("fairseq.examples.")


def stock_names():
    """The names stock fairseq registers, by kind; entries of the plugin, of fairseq's examples folders and of
    any other --user-dir are left out, so the answer is the same whether or not the plugin is loaded."""
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
    from fairseq.optim import OPTIMIZER_REGISTRY
    from fairseq.optim.lr_scheduler import LR_SCHEDULER_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    def names(registry):
        return {name for name, cls in registry.items() if _stock_module(getattr(cls, "__module__", ""))}

    return {"task": names(TASK_REGISTRY), "model": names(MODEL_REGISTRY), "arch": names(ARCH_MODEL_REGISTRY),
            "criterion": names(CRITERION_REGISTRY), "optimizer": names(OPTIMIZER_REGISTRY),
            "lr_scheduler": names(LR_SCHEDULER_REGISTRY)}


def pickle_globals(file):
    """The ``module.name`` of every global a torch checkpoint's pickle refers to (read, never executed);
    ``file``: a path or a readable binary file."""
    with zipfile.ZipFile(file) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(arg)
    return found


def _safe_global(name):
    """What torch.load(weights_only=True) accepts without an allow-list, in the forms fairseq files use."""
    return name == "collections.OrderedDict" or name.startswith("torch.")


def _plain(obj, where):
    """A copy of ``obj`` with every Namespace turned into a dict; anything that is not a plain container, a
    scalar or a tensor is an error naming where it is."""
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise ExportError(f"{where}: key {k!r} of type {type(k).__name__} is not a plain key")
            out[k] = _plain(v, f"{where}.{k}")
        if type(obj) is collections.OrderedDict:  # a state dict: kept as it is (with its _metadata) when plain
            if all(out[k] is v for k, v in obj.items()):
                return obj
            out = collections.OrderedDict(out)
            if hasattr(obj, "_metadata"):
                out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if obj is None or type(obj) in (str, int, float, bool) or isinstance(obj, torch.Tensor):
        return obj
    raise ExportError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} is not a plain value "
                      "(weights_only loading would refuse it)")


def _rewrite_model_cfg(model, stock, src):
    """The model's config (a dict), rewritten to the stock model/architecture in place; returns a note for the
    user or None; raises ExportError when there is no faithful stock equivalent."""
    arch = model.get("arch")
    name = model.get("_name") or arch
    plugin_arch = name if name in EPS_ARCHS else arch if arch in EPS_ARCHS else None
    if plugin_arch:
        stock_arch, dropped = EPS_ARCHS[plugin_arch]
        eps = model.get("layernorm_eps")
        eps = STOCK_LAYERNORM_EPS if eps is None else float(eps)
        if eps != STOCK_LAYERNORM_EPS:
            raise ExportError(
                f"{src}: --arch {plugin_arch} with --layernorm-eps {eps:g} has no stock equivalent: it is stock "
                f"{stock_arch} except that layer-norm epsilon, and stock fairseq's layer norms use "
                f"{STOCK_LAYERNORM_EPS:g}, so a stock {stock_arch} would not compute what this model computes; "
                "use the model with the plugin (--user-dir fairseq_dpreg)")
        pairs = model.get("sentence_pair_encoding") or "joint"
        if pairs != "joint":
            raise ExportError(f"{src}: --sentence-pair-encoding {pairs} (two encoder passes, mean pooling) has "
                              "no stock equivalent: use the model with the plugin (--user-dir fairseq_dpreg)")
        for key in dropped:
            model.pop(key, None)
        model["_name"] = model["arch"] = stock_arch
        return None
    folder = next((f for prefix, f in FAIRSEQ_USER_DIR_ARCHS.items() if str(arch).startswith(prefix)), None)
    if folder:
        return (f"--arch {arch} is fairseq's own code but stock fairseq registers it only with --user-dir "
                f"<fairseq>/{folder} (the folder inside the installed fairseq package): give that --user-dir "
                "(or import fairseq.examples.pointer_generator.pointer_generator_src) when loading the export")
    if name not in stock["model"] and name not in stock["arch"]:
        raise ExportError(f"{src}: model {name!r} is not a stock fairseq model (registered by a --user-dir?)")
    if arch is not None and arch not in stock["arch"]:
        raise ExportError(f"{src}: architecture {arch!r} is not a stock fairseq architecture")
    return None


def export_cfg(cfg, src, stock):
    """The training config (a plain dict, rewritten in place) for stock fairseq; returns notes for the user."""
    notes = []
    for key in ("task", "model", "criterion", "optimizer"):
        if not isinstance(cfg.get(key), dict):
            raise ExportError(f"{src}: cfg.{key} is missing: not a checkpoint written by fairseq-train")
    task = cfg["task"].get("_name")
    if task in REFUSED_TASKS:
        raise ExportError(f"{src}: task {task!r} cannot be exported: {REFUSED_TASKS[task]}")
    new_task = TASKS.get(task, task)
    if new_task not in stock["task"]:
        why = ("a *_dpreg task the plugin does not ship, so its stock task is unknown" if str(task).endswith("_dpreg")
               else "not a stock fairseq task (registered by a --user-dir?)")
        raise ExportError(f"{src}: task {task!r}: {why}")
    crit = cfg["criterion"].get("_name")
    if crit in REFUSED_CRITERIA:
        raise ExportError(f"{src}: criterion {crit!r} cannot be exported: {REFUSED_CRITERIA[crit]}")
    if crit not in stock["criterion"]:
        raise ExportError(f"{src}: criterion {crit!r} is not a stock fairseq criterion")
    opt = cfg["optimizer"].get("_name")
    new_opt = opt[len("dpreg_"):] if isinstance(opt, str) and opt.startswith("dpreg_") else opt
    if new_opt not in stock["optimizer"]:
        raise ExportError(f"{src}: optimizer {opt!r} has no stock fairseq optimizer")
    sched = (cfg.get("lr_scheduler") or {}).get("_name")
    if sched is not None and sched not in stock["lr_scheduler"]:
        raise ExportError(f"{src}: lr scheduler {sched!r} is not a stock fairseq scheduler")

    cfg["task"]["_name"] = new_task
    cfg["optimizer"]["_name"] = new_opt
    note = _rewrite_model_cfg(cfg["model"], stock, src)
    if note:
        notes.append(note)
    if cfg.get("common"):
        cfg["common"]["user_dir"] = None
    # the model's legacy arguments repeat the whole command line: the same names, the same plugin flags
    model = cfg["model"]
    if "task" in model:
        model["task"] = new_task
    if "optimizer" in model:
        model["optimizer"] = new_opt
    if "user_dir" in model:
        model["user_dir"] = None
    if model.get("criterion") in REFUSED_CRITERIA:
        raise ExportError(f"{src}: criterion {model['criterion']!r}: {REFUSED_CRITERIA[model['criterion']]}")
    for section in cfg.values():
        if isinstance(section, dict):
            for k in [k for k in section if isinstance(k, str) and k.startswith("dpreg_")]:
                del section[k]
    return notes


def _stock_optimizer_class(name):
    if name in OPTIMIZER_CLASSES:
        return OPTIMIZER_CLASSES[name]
    return name[len("Dpreg"):] if isinstance(name, str) and name.startswith("Dpreg") else name


def export_state(state, src, stock, optimizer_state=True):
    """The checkpoint's contents (as torch.load gives them) rewritten for stock fairseq; (new state, notes)."""
    if not isinstance(state, dict) or "model" not in state or "cfg" not in state:
        raise ExportError(f"{src}: not a fairseq checkpoint (no 'model' and 'cfg' entries)")
    if state.get("args") is not None:
        raise ExportError(f"{src}: a checkpoint of an older fairseq (legacy 'args' instead of 'cfg'); load and "
                          "save it once with this fairseq first")
    out = {k: v for k, v in state.items() if k not in ("cfg", "extra_state", "last_optimizer_state")}
    out["cfg"] = _plain(state["cfg"], "cfg")
    notes = export_cfg(out["cfg"], src, stock)

    out["optimizer_history"] = _plain(state.get("optimizer_history") or [], "optimizer_history")
    for entry in out["optimizer_history"]:
        if "optimizer_name" in entry:
            entry["optimizer_name"] = _stock_optimizer_class(entry["optimizer_name"])

    extra = _plain(state.get("extra_state") or {}, "extra_state")
    for name, meters in (extra.get("metrics") or {}).items():  # [(priority, key, meter class, meter state)]
        extra["metrics"][name] = [m for m in meters if not str(m[1]).startswith("dpreg_")]
    out["extra_state"] = extra

    if optimizer_state and state.get("last_optimizer_state") is not None:
        opt = _plain(state["last_optimizer_state"], "last_optimizer_state")
        for key in PLUGIN_OPTIMIZER_STATE:
            opt.pop(key, None)
        out["last_optimizer_state"] = opt
    for key in ("model", "criterion", "task_state"):
        if key in out:
            out[key] = _plain(out[key], key)
    return out, notes


def _load(path):
    """torch.load with weights_only=True; argparse.Namespace is allowed for this one call (fairseq keeps the
    model's arguments in one). (torch's safe_globals context removes on exit what it added, even when it had
    been allowed before, e.g. by the plugin in this process: so it is used only when needed.)"""
    allowed = argparse.Namespace in torch.serialization.get_safe_globals()
    try:
        with contextlib.nullcontext() if allowed else torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, not a torch file, or one holding other objects
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{path}: cannot be read as a fairseq checkpoint: {type(e).__name__}: {first}") from None


def export_checkpoint(src, dst, optimizer_state=True):
    """Write ``dst``: the checkpoint ``src`` for stock fairseq. Returns a report dict (sizes, names, notes)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if os.path.isdir(src):
        example = os.path.join(src, "checkpoint_best.pt")
        raise ExportError(f"{src}: is a folder; give the checkpoint file (e.g. {example})")
    if not os.path.isfile(src):
        raise ExportError(f"{src}: no such checkpoint file")
    if os.path.abspath(src) == os.path.abspath(dst) or (os.path.exists(dst) and os.path.samefile(src, dst)):
        raise ExportError(f"{dst}: is the input checkpoint itself; write the export to another file")
    if os.path.isdir(dst):
        raise ExportError(f"{dst}: is a folder; give the output file's name (e.g. {os.path.join(dst, 'model.pt')})")
    state = _load(src)
    out, notes = export_state(state, src, stock_names(), optimizer_state=optimizer_state)
    try:
        with atomic_open(dst, "w+b") as f:
            torch.save(out, f)
            f.flush()
            f.seek(0)
            # cannot happen after _plain; checked on the bytes a user will load, before they replace OUT
            unsafe = sorted(g for g in pickle_globals(f) if not _safe_global(g))
            if unsafe:
                raise ExportError(f"{dst}: would still hold non-plain objects {unsafe}; nothing written")
    except OSError as e:
        raise ExportError(f"{dst}: cannot be written: {e.strerror or e}") from None
    return {"input": src, "output": dst, "input_bytes": os.path.getsize(src), "output_bytes": os.path.getsize(dst),
            "task": out["cfg"]["task"]["_name"], "arch": out["cfg"]["model"].get("arch"),
            "optimizer": out["cfg"]["optimizer"]["_name"], "optimizer_state": "last_optimizer_state" in out,
            "notes": notes}


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="export_checkpoint.py",
        description="Rewrite a checkpoint trained with the fairseq-dpreg plugin (*_dpreg task, dpreg_* optimizer) "
                    "as a stock fairseq checkpoint: loadable by fairseq-generate / from_pretrained without "
                    "--user-dir, and by torch.load(weights_only=True).")
    p.add_argument("input", metavar="IN", help="checkpoint written by fairseq-train --user-dir fairseq_dpreg")
    p.add_argument("output", metavar="OUT", help="the exported checkpoint (written atomically; never IN)")
    p.add_argument("--no-optimizer-state", action="store_true",
                   help="leave out the optimizer's state (a smaller release file; resuming training from it "
                        "then starts the optimizer afresh)")
    args = p.parse_args(argv)
    try:
        report = export_checkpoint(args.input, args.output, optimizer_state=not args.no_optimizer_state)
    except ExportError as e:
        p.exit(2, f"export_checkpoint.py: error: {e}\n")
    print(f"wrote {report['output']}: task {report['task']}, arch {report['arch']}, optimizer "
          f"{report['optimizer']}, optimizer state {'kept' if report['optimizer_state'] else 'left out'}; "
          f"{report['input_bytes']} -> {report['output_bytes']} bytes")
    for note in report["notes"]:
        print(f"note: {note}")
    return 0
