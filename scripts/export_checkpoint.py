#!/usr/bin/env python
"""Release a model trained with the plugin as a stock fairseq checkpoint.

    python scripts/export_checkpoint.py IN OUT [--no-optimizer-state]

OUT loads without the plugin (no --user-dir) in fairseq-generate, ``TransformerModel.from_pretrained``,
``RobertaModel.from_pretrained`` and ``torch.load(weights_only=True)``. See fairseq_dpreg/export.py.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("fairseq_dpreg") is None:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_dpreg.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
