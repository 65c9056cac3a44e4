"""fairseq glue: registers the dpreg_* optimizers and the *_dpreg tasks; allow-lists checkpoint types."""
from . import checkpoint, distributed, help, optimizer, tasks  # noqa: F401
