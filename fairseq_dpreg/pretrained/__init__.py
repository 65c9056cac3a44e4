"""Pretrained encoders from Hugging Face checkpoints: the converter (:mod:`.convert`), the ``hf_encoder``
architecture it targets (:mod:`.model`, registered with fairseq by the plugin) and the tokenizer of a
converted folder (:mod:`.tokenizer`, no fairseq needed)."""
