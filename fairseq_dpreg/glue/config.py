"""The plugin's flags: one dataclass, shared by every ``dpreg_<name>`` optimizer (``fairseq-train --help``)."""
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

DPREG_ALGORITHM_CHOICES = ChoiceEnum(["dotprod", "reptile", "fomaml"])
DPREG_WEIGHTING_CHOICES = ChoiceEnum(["relative", "absolute"])
DPREG_FD_CHOICES = ChoiceEnum(["central", "forward"])


@dataclass
class DpregConfig(FairseqDataclass):
    dpreg_algorithm: DPREG_ALGORITHM_CHOICES = field(
        default="dotprod",
        metadata={"help": "dotprod: explicit gradient dot-product regularizer; reptile / fomaml: the meta-learning "
                          "baselines used as single-task regularizers (need --dpreg-alpha)"},
    )
    dpreg_lambda: float = field(
        default=0.1,
        metadata={"help": "weight of the dot-product term; with --dpreg-weighting relative it is beta, the norm "
                          "of the regularizing term as a fraction of the loss gradient's; 0 = plain training"},
    )
    dpreg_weighting: DPREG_WEIGHTING_CHOICES = field(
        default="relative",
        metadata={"help": "relative: bounded term beta*||g_loss||*h/||h|| (stable, default); absolute: "
                          "-lambda*<g1,g2> as written (unbounded below: diverges for large lambda)"},
    )
    dpreg_radius: float = field(
        default=0.01,
        metadata={"help": "finite-difference radius r > 0: length of the parameter perturbation along g1/||g1||"},
    )
    dpreg_fd: DPREG_FD_CHOICES = field(
        default="central",
        metadata={"help": "finite-difference scheme for H2 g1: central (O(r^2) error) or forward (O(r)); both "
                          "cost three half-batch passes"},
    )
    dpreg_alpha: Optional[float] = field(
        default=None,
        metadata={"help": "inner SGD step size for --dpreg-algorithm reptile / fomaml (their implicit "
                          "dot-product weight is alpha/4 / alpha/2)"},
    )
    dpreg_start_update: int = field(
        default=0, metadata={"help": "plain updates before this update number, regularized from it on"}
    )
    dpreg_interval: int = field(
        default=1,
        metadata={"help": "lazy regularization: a regularized update every k-th update with its regularizing "
                          "term scaled by k, plain updates between (amortized cost 1 + 0.5/k)"},
    )
    dpreg_max_ratio: float = field(
        default=10.0,
        metadata={"help": "runaway guard: skip an update whose regularizing term is more than this many times "
                          "the loss gradient's norm (logged, parameters untouched)"},
    )
