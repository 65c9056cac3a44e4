"""fairseq glue: registers the dpreg_* optimizers and the *_dpreg tasks; allow-lists checkpoint types; makes
fairseq's own transformer_pointer_generator architecture available next to them (models.py); the two narrow
adjustments to fairseq (distributed.py: c10d on CPU; amp.py: --amp unscales once and checkpoints its state)."""
from . import amp, checkpoint, distributed, help, models, optimizer, tasks  # noqa: F401
