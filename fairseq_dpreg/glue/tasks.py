"""The ``*_dpreg`` variants of fairseq's stock tasks (each is the mixin in front of the stock class)."""
from fairseq.tasks import register_task
from fairseq.tasks.sentence_prediction import SentencePredictionConfig, SentencePredictionTask
from fairseq.tasks.sentence_ranking import SentenceRankingTask
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from .task import DpregTaskMixin


@register_task("translation_dpreg", dataclass=TranslationConfig)
class TranslationDpregTask(DpregTaskMixin, TranslationTask):
    """translation (e.g. Gigaword headline generation) trained with the dot-product regularizer."""


@register_task("sentence_prediction_dpreg", dataclass=SentencePredictionConfig)
class SentencePredictionDpregTask(DpregTaskMixin, SentencePredictionTask):
    """sentence_prediction (GLUE/SuperGLUE classification) trained with the dot-product regularizer."""


@register_task("sentence_ranking_dpreg")
class SentenceRankingDpregTask(DpregTaskMixin, SentenceRankingTask):
    """sentence_ranking (COPA-style multiple choice) trained with the dot-product regularizer."""
