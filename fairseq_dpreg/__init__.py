"""fairseq-dpreg: the gradient dot-product regularizer of Beyond Reptile (Findings of EMNLP 2021).

- ``from fairseq_dpreg import DotProductRegularizer``: the pure-PyTorch core (no fairseq needed).
- ``fairseq-train --user-dir fairseq_dpreg ...`` (or ``import fairseq_dpreg.glue``): registers the plugin's
  ``dpreg_*`` optimizers and ``*_dpreg`` tasks with fairseq.

Importing the package stays light: the fairseq glue is registered here only when fairseq is already loaded,
which is the case when fairseq imports this package as a ``--user-dir``.
"""
import sys

__all__ = ["DotProductRegularizer"]


def __getattr__(name):
    if name == "DotProductRegularizer":
        from .core import DotProductRegularizer

        return DotProductRegularizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if "fairseq" in sys.modules:
    from . import glue  # noqa: F401,E402  (registers dpreg_* optimizers, *_dpreg tasks, checkpoint types)
    from .qa import criterion, task  # noqa: F401,E402  (task extractive_qa[_dpreg], criterion extractive_qa)
