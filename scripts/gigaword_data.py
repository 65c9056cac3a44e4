#!/usr/bin/env python
"""Data helpers of the Gigaword pipeline (examples/gigaword/{prepare,evaluate}.sh).

Sub-commands (``python scripts/gigaword_data.py SUBCOMMAND -h`` for the flags):

  stage         find, validate and clean a Rush-format release; train SentencePiece; encode every split
  gen-input     clean + encode + truncate a raw source file for fairseq-generate (evaluation)
  collect       parse fairseq-generate output, restore input order, decode, write one hypothesis a line
  lead          the lead-N-words baseline (first N words of each source line)
  export-hf     write the Hugging Face ``gigaword`` dataset as {train,valid,test}.{src,tgt}

The library is fairseq_dpreg/gigaword/data.py. Conventions (see examples/gigaword/README.md):
  * cleaning keeps the release conventions: lowercase, every digit written ``#``, single spaces;
  * the unknown-word tokens of the release (``UNK`` in the test set, ``<unk>`` in train/valid) are all
    written as the reserved symbol ``UNK``; it is a SentencePiece user-defined symbol, so it is one piece
    that is never split, and any unknown piece of fairseq (``<unk>``) is written back as ``UNK``.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fairseq_dpreg.atomic import write_lines_atomic  # noqa: E402
from fairseq_dpreg.gigaword.data import (  # noqa: E402
    UNK, DataError, GenerateOutputError, checkpoint_max_source_positions, collect, export_hf, lead, load_codec,
    make_generate_input, read_lines_lenient, stage)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("stage", help="validate, clean, train SentencePiece, encode")
    s.add_argument("in_dir")
    s.add_argument("out_dir")
    s.add_argument("--vocab-size", type=int, default=8000)
    s.add_argument("--model-type", choices=["unigram", "bpe"], default="unigram")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--bpe", choices=["spm", "gpt2", "hf"], default="spm")
    s.add_argument("--hf-dir", help="--bpe hf: converted encoder folder (tokenizer.json, dict.txt)")
    s.add_argument("--gpt2-encoder")
    s.add_argument("--gpt2-vocab")

    g = sub.add_parser("gen-input", help="encode a raw source file for fairseq-generate")
    g.add_argument("--data-bin", required=True)
    g.add_argument("--src", required=True, help="raw source file (one input a line)")
    g.add_argument("--out", required=True, help="output prefix: writes OUT.src and a dummy OUT.tgt")
    g.add_argument("--checkpoint", help="read max_source_positions from it")
    g.add_argument("--max-source-positions", type=int, help="override (positions, eos included)")

    c = sub.add_parser("collect", help="fairseq-generate output -> hypotheses in input order")
    c.add_argument("--data-bin", required=True)
    c.add_argument("--generate-output", required=True)
    c.add_argument("--encoded-src", required=True, help="OUT.src written by gen-input")
    c.add_argument("--out", required=True)

    ld = sub.add_parser("lead", help="lead-N baseline: first N words of each source line")
    ld.add_argument("src")
    ld.add_argument("out")
    ld.add_argument("-n", type=int, default=8)

    e = sub.add_parser("export-hf", help="Hugging Face `gigaword` -> {split}.src/.tgt (needs `datasets`)")
    e.add_argument("out_dir")
    e.add_argument("--name", default="gigaword")

    a = p.parse_args(argv)
    try:
        if a.cmd == "stage":
            stage(a.in_dir, a.out_dir, a.vocab_size, a.model_type, a.workers, a.bpe, a.gpt2_encoder, a.gpt2_vocab,
                  hf_dir=a.hf_dir)
        elif a.cmd == "gen-input":
            codec = load_codec(a.data_bin)
            max_pos = a.max_source_positions
            if max_pos is None and a.checkpoint:
                max_pos = checkpoint_max_source_positions(a.checkpoint)
            raw = read_lines_lenient(a.src)
            toks, n_trunc, n_empty = make_generate_input(codec, raw, None if max_pos is None else max_pos - 1)
            write_lines_atomic(a.out + ".src", toks)
            write_lines_atomic(a.out + ".tgt", [toks[0].split()[0]] * len(toks))  # fairseq wants a target side
            print(f"[gen-input] {len(toks)} sources from {a.src}; max source positions {max_pos}: "
                  f"{n_trunc} truncated, {n_empty} empty (given as {UNK})")
        elif a.cmd == "collect":
            codec = load_codec(a.data_bin)
            expected = Path(a.encoded_src).read_text(encoding="utf-8").splitlines()
            with open(a.generate_output, encoding="utf-8") as f:
                hyps = collect(f, codec, expected)
            write_lines_atomic(a.out, hyps)
            print(f"[collect] {len(hyps)} hypotheses in input order -> {a.out}")
        elif a.cmd == "lead":
            write_lines_atomic(a.out, lead(read_lines_lenient(a.src), a.n))
        elif a.cmd == "export-hf":
            export_hf(a.out_dir, a.name)
    except (DataError, GenerateOutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
