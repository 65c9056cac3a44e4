#!/usr/bin/env python
"""Convert a Hugging Face encoder checkpoint (BERT / MiniLM, RoBERTa, ELECTRA discriminator) for fairseq.

    scripts/convert_hf_encoder.py HF_DIR OUT_DIR [--force]

HF_DIR holds config.json, model.safetensors (or pytorch_model.bin) and tokenizer.json (or vocab.txt for
BERT/ELECTRA, vocab.json + merges.txt for RoBERTa). OUT_DIR receives model.pt (for fairseq-train
--restore-file with --arch hf_encoder and the flags in conversion.json's "fairseq_args"), dict.txt
(Hugging Face ids; fairseq index = 4 + id), tokenizer.json (for prepare.sh --tokenizer hf / --bpe hf) and
conversion.json (what went where, what was not converted and why). The mapping is described in
fairseq_dpreg/pretrained/convert.py and README.md ("Pretrained encoders").
"""
import argparse
import importlib.util
import json
import os
import sys

if importlib.util.find_spec("fairseq_dpreg") is None:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(prog="convert_hf_encoder.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hf_dir", metavar="HF_DIR", help="Hugging Face model folder")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (built beside it, renamed into place)")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    args = p.parse_args(argv)
    from fairseq_dpreg.pretrained.convert import ConversionError, convert

    try:
        info = convert(args.hf_dir, args.out_dir, force=args.force)
    except ConversionError as e:
        print(f"convert_hf_encoder.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out_dir": args.out_dir, "family": info["family"], "tensors_converted": info["tensors_converted"],
                      "not_converted": len(info["not_converted"]), "initialised_fresh": len(info["initialised_fresh"]),
                      "fairseq_args": " ".join(info["fairseq_args"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
