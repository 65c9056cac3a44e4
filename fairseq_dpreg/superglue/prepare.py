"""Write the raw-text fairseq inputs of a SuperGLUE task (layout in :mod:`.tasks`).

For each split ``S`` read from ``INPUT_DIR/S.jsonl`` the output directory receives:

* ``S.input0``, ``S.input1``, ... : raw text, one example per line (``num_inputs`` files);
* ``S.label``: one label per line (absent for an unlabelled split such as ``test``);
* ``S.ids``: one JSON object per line mapping the example back to the SuperGLUE record;

and ``info.json`` describes the task (fairseq task, number of inputs, label set, example counts of the
splits written by this run). Each file is written to a temporary name and renamed into place.
"""

import json
import os

from .tasks import SuperGLUEError, build_examples, get_task
from ..atomic import write_lines_atomic

__all__ = ["prepare_split", "prepare_task"]


def prepare_split(task, input_path, output_dir, split):
    """Write one split; returns ``{"examples": n, "labelled": bool}``."""
    spec = get_task(task)
    examples = build_examples(spec.name, input_path)
    os.makedirs(output_dir, exist_ok=True)
    prefix = os.path.join(output_dir, split)
    for k in range(spec.num_inputs):
        write_lines_atomic(f"{prefix}.input{k}", (ex.inputs[k] for ex in examples))
    labelled = bool(examples) and examples[0].label is not None
    if labelled:
        write_lines_atomic(f"{prefix}.label", (ex.label for ex in examples))
    elif os.path.exists(f"{prefix}.label"):
        os.unlink(f"{prefix}.label")  # a stale label file would silently pair with the new inputs
    write_lines_atomic(f"{prefix}.ids", (json.dumps(ex.ids, ensure_ascii=False) for ex in examples))
    return {"examples": len(examples), "labelled": labelled}


def prepare_task(task, input_dir, output_dir, splits=("train", "val")):
    """Prepare every split ``S`` from ``input_dir/S.jsonl``; returns the content of ``info.json``."""
    spec = get_task(task)
    counts = {}
    for split in splits:
        path = os.path.join(input_dir, f"{split}.jsonl")
        if not os.path.isfile(path):
            raise SuperGLUEError(f"{path}: no such file (split {split!r} of {spec.name})")
        counts[split] = prepare_split(spec.name, path, output_dir, split)
    info = {
        "task": spec.name,
        "fairseq_task": spec.fairseq_task,
        "inputs": [f"input{k}" for k in range(spec.num_inputs)],
        "labels": list(spec.labels),
        "num_classes": len(spec.labels) if spec.fairseq_task == "sentence_prediction" else spec.num_inputs - 1,
        "splits": counts,
    }
    write_lines_atomic(os.path.join(output_dir, "info.json"), [json.dumps(info, indent=2)])
    return info
