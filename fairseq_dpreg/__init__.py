"""fairseq-dpreg: the gradient dot-product regularizer of Beyond Reptile (Findings of EMNLP 2021).

``from fairseq_dpreg import DotProductRegularizer`` needs only PyTorch. When fairseq is installed, importing
this package (``fairseq-train --user-dir fairseq_dpreg``) also registers the plugin's optimizers and tasks.
"""
from .core import DotProductRegularizer  # noqa: F401

try:
    import fairseq  # noqa: F401
except ImportError:  # the pure-PyTorch core works without fairseq
    fairseq = None

if fairseq is not None:
    from . import glue  # noqa: F401,E402  (registers dpreg_* optimizers and *_dpreg tasks)
