"""fairseq glue: registers the dpreg_* optimizers and the *_dpreg tasks; allow-lists checkpoint types; makes
fairseq's own transformer_pointer_generator architecture available next to them (models.py)."""
from . import amp, checkpoint, distributed, help, models, optimizer, tasks  # noqa: F401
