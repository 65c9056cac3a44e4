"""The Gigaword pipeline's library: data.py (cleaning, codecs, staging, fairseq-generate input and output),
hf_codec.py (the converted encoder's tokenizer, --bpe hf), rouge.py and rouge155.py (scoring: rouge-score and the
ROUGE-1.5.5 Perl script); the command lines are scripts/gigaword_data.py and scripts/rouge.py."""
