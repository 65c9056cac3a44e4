"""The Gigaword pipeline's library: data.py (cleaning, codecs, staging, fairseq-generate input and output),
hf_codec.py (the converted encoder's tokenizer, --bpe hf); the command line is scripts/gigaword_data.py."""
