#!/usr/bin/env python
"""Binarize extractive-QA data (SQuAD 2.0 JSON or MRQA jsonl) for ``fairseq-train --task extractive_qa``.

    qa_prepare.py --train train-v2.0.json --valid dev-v2.0.json --destdir data-bin/squad2 \\
        --tokenizer sentencepiece --spm-vocab-size 8000          # from scratch: trains spm on --train
    qa_prepare.py ... --tokenizer gpt2 --gpt2-encoder-json encoder.json --gpt2-vocab-bpe vocab.bpe \\
        --dict roberta.base/dict.txt                             # for a RoBERTa checkpoint
    qa_prepare.py ... --tokenizer hf --hf-dir minilm-fairseq     # a converted Hugging Face checkpoint
    qa_prepare.py --make-synthetic DIR                           # writes DIR/train.json, DIR/dev.json

Each question becomes one or more windows ``<s> question </s> </s> context-window </s>`` of at most
--max-seq-len tokens; consecutive windows start --doc-stride tokens apart. Bad input (malformed JSON,
answer offsets that do not match the context) stops with a message naming the file and the record, exit 2.
"""

import argparse
import importlib.util
import json
import logging
import os
import shutil
import sys
import time

if importlib.util.find_spec("fairseq_dpreg") is None:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_dpreg.qa.data import (  # noqa: E402
    QADataError,
    ReadStats,
    detect_format,
    make_synthetic_squad2,
    read_qa_file,
    write_text_atomic,
)
from fairseq_dpreg.qa.tokenization import FeaturizeStats, build_tokenizer, featurize, train_spm  # noqa: E402

logger = logging.getLogger("qa_prepare")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="qa_prepare.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("input / output")
    io.add_argument("--train", metavar="FILE", help="training data (SQuAD .json or MRQA .jsonl[.gz])")
    io.add_argument("--valid", metavar="FILE", help="validation data, written as split 'valid'")
    io.add_argument("--test", metavar="FILE", help="test data, written as split 'test'")
    io.add_argument("--format", choices=["auto", "squad", "mrqa"], default="auto",
                    help="input format (default: auto, from the file content)")
    io.add_argument("--destdir", metavar="DIR", help="output directory (the --data of fairseq-train)")
    io.add_argument("--on-bad-answer", choices=["error", "skip"], default="error",
                    help="an answer whose offsets do not match the context: stop (default) or drop it "
                         "(logged; a question left without answers is dropped)")
    tok = p.add_argument_group("tokenizer")
    tok.add_argument("--tokenizer", choices=["sentencepiece", "gpt2", "hf"], default="sentencepiece",
                     help="sentencepiece (from-scratch models), gpt2 (GPT-2 byte BPE, RoBERTa checkpoints) "
                          "or hf (the tokenizer.json of a converted Hugging Face checkpoint, --hf-dir)")
    tok.add_argument("--spm-model", metavar="FILE", help="existing SentencePiece model (copied to DESTDIR/spm.model)")
    tok.add_argument("--spm-vocab-size", type=int, default=8000, metavar="N",
                     help="without --spm-model: train a unigram SentencePiece model of N pieces on the "
                          "--train contexts and questions (default 8000)")
    tok.add_argument("--spm-no-punct-split", action="store_true",
                     help="do not put spaces around punctuation before SentencePiece (by default pieces never "
                          "cross a word/punctuation boundary, so answers like 'Paris' in 'Paris.' are exact; "
                          "the setting must match how the --spm-model was trained)")
    tok.add_argument("--gpt2-encoder-json", metavar="FILE", help="GPT-2 encoder.json (gpt2 tokenizer)")
    tok.add_argument("--gpt2-vocab-bpe", metavar="FILE", help="GPT-2 vocab.bpe (gpt2 tokenizer)")
    tok.add_argument("--hf-dir", metavar="DIR",
                     help="hf tokenizer: a folder from scripts/convert_hf_encoder.py; its tokenizer.json encodes "
                          "the text and its dict.txt (Hugging Face ids, fairseq index = 4 + id) is the dictionary")
    tok.add_argument("--dict", metavar="FILE",
                     help="fairseq dict.txt to use (required for gpt2: the checkpoint's dict.txt); default "
                          "for sentencepiece: the SentencePiece vocabulary; hf: HF_DIR/dict.txt (not --dict)")
    win = p.add_argument_group("windows")
    win.add_argument("--max-seq-len", type=int, default=384, metavar="N",
                     help="tokens per window including the 4 special tokens (default 384; must not exceed "
                          "the model's --max-positions)")
    win.add_argument("--doc-stride", type=int, default=128, metavar="N",
                     help="tokens between the starts of consecutive windows of a long context (default 128)")
    win.add_argument("--max-query-len", type=int, default=64, metavar="N",
                     help="questions are cut to N tokens (default 64)")
    syn = p.add_argument_group("synthetic data")
    syn.add_argument("--make-synthetic", metavar="DIR",
                     help="write a synthetic SQuAD 2.0 train.json / dev.json into DIR and exit")
    syn.add_argument("--synthetic-train", type=int, default=400, metavar="N", help="training contexts (400)")
    syn.add_argument("--synthetic-valid", type=int, default=60, metavar="N", help="validation contexts (60)")
    syn.add_argument("--seed", type=int, default=1, help="seed of the synthetic data (1)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    args = p.parse_args(argv)
    if not args.make_synthetic:
        if not args.destdir:
            p.error("--destdir is required")
        if not (args.train or args.valid or args.test):
            p.error("give at least one of --train, --valid, --test")
        if args.tokenizer == "gpt2" and not (args.gpt2_encoder_json and args.gpt2_vocab_bpe and args.dict):
            p.error("--tokenizer gpt2 needs --gpt2-encoder-json, --gpt2-vocab-bpe and --dict")
        if args.tokenizer == "hf" and not args.hf_dir:
            p.error("--tokenizer hf needs --hf-dir DIR (a converted folder holding tokenizer.json and dict.txt)")
        if args.tokenizer == "hf" and args.dict:
            p.error("--tokenizer hf uses HF_DIR/dict.txt, the converted checkpoint's dictionary: leave out --dict")
        if args.tokenizer != "hf" and args.hf_dir:
            p.error("--hf-dir goes with --tokenizer hf")
        if args.tokenizer == "sentencepiece" and not args.spm_model and not args.train:
            p.error("--tokenizer sentencepiece needs --spm-model, or --train to learn one from")
    return args


def input_name(path, destdir):
    """How qa_prepare.json records an input: its absolute path, or its path relative to DESTDIR for a file
    inside DESTDIR (it moves with the folder, e.g. the synthetic set of prepare.sh in DESTDIR/gold/)."""
    path, destdir = os.path.abspath(path), os.path.abspath(destdir)
    return os.path.relpath(path, destdir) if path.startswith(destdir + os.sep) else path


def make_synthetic(args):
    os.makedirs(args.make_synthetic, exist_ok=True)
    for name, n, seed, title in (("train.json", args.synthetic_train, args.seed, "train"),
                                 ("dev.json", args.synthetic_valid, args.seed + 1000, "dev")):
        doc = make_synthetic_squad2(n, seed=seed, title=title)
        path = os.path.join(args.make_synthetic, name)
        write_text_atomic(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
        nq = sum(len(p["qas"]) for p in doc["data"][0]["paragraphs"])
        print(f"{path}: {n} contexts, {nq} questions")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", stream=sys.stderr)
    if args.make_synthetic:
        make_synthetic(args)
        return 0

    # hf: check the converted folder (tokenizer.json, dict.txt and their fit) before anything slow
    hf_tokenizer = build_tokenizer("hf", hf_dir=args.hf_dir) if args.tokenizer == "hf" else None

    from fairseq.data import Dictionary

    from fairseq_dpreg.qa.task import write_settings, write_split

    splits = [(s, path) for s, path in (("train", args.train), ("valid", args.valid), ("test", args.test)) if path]
    read = {}
    for split, path in splits:
        t0 = time.time()
        stats = ReadStats()
        read[split] = read_qa_file(path, args.format, on_bad_answer=args.on_bad_answer, stats=stats)
        logger.info("%s: read %s in %.1fs: %s", split, path, time.time() - t0, stats)
    os.makedirs(args.destdir, exist_ok=True)

    settings = {"tokenizer": args.tokenizer, "max_seq_len": args.max_seq_len, "doc_stride": args.doc_stride,
                "max_query_len": args.max_query_len, "inputs": {s: input_name(p, args.destdir) for s, p in splits},
                "formats": {s: detect_format(p) if args.format == "auto" else args.format for s, p in splits}}
    if args.tokenizer == "sentencepiece":
        spm_path = os.path.join(args.destdir, "spm.model")
        if args.spm_model:
            if os.path.abspath(args.spm_model) != os.path.abspath(spm_path):
                shutil.copyfile(args.spm_model, spm_path)
        else:
            logger.info("training SentencePiece (%d pieces) on %s", args.spm_vocab_size, args.train)
            train_spm(read["train"], os.path.join(args.destdir, "spm"), args.spm_vocab_size,
                      punct_split=not args.spm_no_punct_split)
        tokenizer = build_tokenizer("sentencepiece", spm_model=spm_path, punct_split=not args.spm_no_punct_split)
        settings.update(spm_model="spm.model", spm_punct_split=not args.spm_no_punct_split)
    elif args.tokenizer == "hf":
        tokenizer = hf_tokenizer
        args.dict = tokenizer.dict_path
        settings.update(hf_dir=os.path.abspath(args.hf_dir))
    else:
        tokenizer = build_tokenizer("gpt2", gpt2_encoder_json=args.gpt2_encoder_json,
                                    gpt2_vocab_bpe=args.gpt2_vocab_bpe)
        settings.update(gpt2_encoder_json=os.path.abspath(args.gpt2_encoder_json),
                        gpt2_vocab_bpe=os.path.abspath(args.gpt2_vocab_bpe))

    dict_path = os.path.join(args.destdir, "dict.txt")
    if args.dict:
        if os.path.abspath(args.dict) != os.path.abspath(dict_path):
            shutil.copyfile(args.dict, dict_path)
        dictionary = Dictionary.load(dict_path)
    else:
        dictionary = Dictionary()
        for sym in tokenizer.dictionary_symbols():
            dictionary.add_symbol(sym)
        dictionary.save(dict_path)
    logger.info("dictionary %s: %d types", dict_path, len(dictionary))

    summary = {}
    for split, path in splits:
        t0 = time.time()
        fstats = FeaturizeStats()
        features = featurize(read[split], tokenizer, max_seq_len=args.max_seq_len, doc_stride=args.doc_stride,
                             max_query_len=args.max_query_len, stats=fstats, source=path)
        info = write_split(args.destdir, split, read[split], features, dictionary)
        info["questions_truncated"] = fstats.questions_truncated
        summary[split] = info
        logger.info("%s: %d windows written in %.1fs", split, len(features), time.time() - t0)
    settings["splits"] = summary
    write_settings(args.destdir, settings)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (QADataError, ValueError, FileNotFoundError) as e:
        print(f"qa_prepare.py: error: {e}", file=sys.stderr)
        sys.exit(2)
