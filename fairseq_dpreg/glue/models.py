"""Architectures made available under ``--user-dir fairseq_dpreg``.

``--arch hf_encoder``: fairseq's RoBERTa encoder with a settable layer-norm epsilon, the target of the
Hugging Face converter (``fairseq_dpreg/pretrained/model.py``, ``scripts/convert_hf_encoder.py``).

``--arch transformer_warm``: a transformer whose encoder starts from a converted encoder and whose decoder is
new (BERT2RND; ``fairseq_dpreg/pretrained/seq2seq.py``, ``--encoder-init DIR``).

``--arch transformer_pointer_generator``: fairseq's own pointer-generator transformer (a transformer whose
output mixes the vocabulary distribution with a copy distribution over the source tokens, weighted by a
learned p_gen; See et al. 2017). It ships with fairseq (``fairseq/examples/pointer_generator``) but is
registered only when that folder is the ``--user-dir``, and fairseq takes one ``--user-dir``: importing it
here lets a run use it together with this plugin's tasks and optimizers. The code is fairseq's, unchanged.
With a subword vocabulary shared by source and target use ``--source-position-markers 0`` (no
per-position OOV symbols are needed: every source piece is in the joined dictionary).
"""
import importlib
import logging
import sys

from ..pretrained import model as _hf_encoder  # noqa: F401,E402  (registers --arch hf_encoder)
from ..pretrained import seq2seq as _warm  # noqa: F401,E402  (registers --arch transformer_warm)

logger = logging.getLogger(__name__)

_PG_MODULE = "fairseq.examples.pointer_generator.pointer_generator_src"

# Already registered when the user passed fairseq's folder itself as --user-dir (module pointer_generator_src).
if "pointer_generator_src" not in sys.modules:
    try:
        importlib.import_module(_PG_MODULE)
    except ImportError as e:  # a fairseq install without its examples: the plugin still works without the arch
        logger.warning("transformer_pointer_generator not registered (%s: %s)", _PG_MODULE, e)
