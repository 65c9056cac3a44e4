#!/usr/bin/env bash
# SuperGLUE data preparation: released jsonl -> raw text -> BPE -> fairseq binaries, one folder per input.
#
#   examples/superglue/prepare.sh TASK RAW_DIR OUT_DIR [--bpe spm|gpt2|hf] [--gpt2-dir DIR] [--hf-dir DIR]
#                                 [--splits train,val,test] [--vocab-size 8000] [--max-positions 512]
#                                 [--workers 1] [--force]
#
# TASK             BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC or WSC (any case)
# RAW_DIR          the released task folder: RAW_DIR/{split}.jsonl (train.jsonl, val.jsonl, test.jsonl)
# --bpe spm        (default) train a SentencePiece model of --vocab-size pieces on the training split's
#                  text; its own dictionary (for cpu-tiny, trained from scratch)
# --bpe gpt2       RoBERTa's GPT-2 byte BPE (fairseq's multiprocessing_bpe_encoder) and the checkpoint's
#                  dictionary: --gpt2-dir DIR must hold encoder.json, vocab.bpe and the checkpoint's dict.txt
# --bpe hf         the tokenizer of a converted Hugging Face checkpoint (BERT/MiniLM/ELECTRA WordPiece, RoBERTa
#                  byte BPE): --hf-dir DIR is the folder of scripts/convert_hf_encoder.py; its tokenizer.json
#                  encodes the text into Hugging Face ids and its dict.txt (fairseq index = 4 + id) is the dictionary
# --splits LIST    comma-separated splits to read (default: those of train, val, test that exist). The split
#                  `val` becomes fairseq's `valid`; other names are kept.
# --max-positions  longest example, in tokens with <s> and separators (default 512, 0 = no limit): a longer
#                  example loses the end of input0 (passage / paragraph / premise), never the question
# --workers N      processes for BPE encoding (threads for hf) and binarization (default 1)
# --force          replace a non-empty OUT_DIR
# OUT_DIR (the DATA_BIN of train.sh / evaluate.sh) gets input0/, input1/, ... (dict.txt, {split}.bin/.idx),
#   label/ (dict.txt + binaries; COPA: raw {split}.label files, as fairseq's sentence_ranking reads them),
#   {split}.ids (one JSON id per example, for predict.py), gold/{split}.jsonl (the labelled input files, the
#   references of evaluate.sh), superglue.json (task, fairseq task, classes, BPE (hf: and hf_dir, the folder),
#   split counts) and, for spm, spm.model / spm.vocab. It is built in a temporary folder beside OUT_DIR and
#   renamed into place at the end.
# Environment: PYTHON (which interpreter; default .venv/bin/python of the repository).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
[ $# -ge 3 ] || usage 2
TASK="$1"; RAW_DIR="$2"; OUT_DIR="$3"; shift 3
BPE=spm; GPT2_DIR=""; HF_DIR=""; SPLITS=""; VOCAB=8000; MAX_POS=512; WORKERS=1; FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bpe) BPE="${2:?--bpe needs a value}"; shift 2 ;;
    --gpt2-dir) GPT2_DIR="${2:?--gpt2-dir needs a value}"; shift 2 ;;
    --hf-dir) HF_DIR="${2:?--hf-dir needs a value}"; shift 2 ;;
    --splits) SPLITS="${2:?--splits needs a value}"; shift 2 ;;
    --vocab-size) VOCAB="${2:?--vocab-size needs a value}"; shift 2 ;;
    --max-positions) MAX_POS="${2:?--max-positions needs a value}"; shift 2 ;;
    --workers) WORKERS="${2:?--workers needs a value}"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage 0 ;;
    *) die "unknown option $1" ;;
  esac
done
case "$BPE" in spm|gpt2|hf) ;; *) die "--bpe must be spm, gpt2 or hf" ;; esac
for v in "$VOCAB" "$MAX_POS" "$WORKERS"; do
  [[ "$v" =~ ^[0-9]+$ ]] || die "--vocab-size, --max-positions and --workers take whole numbers (got $v)"
done
[ "$WORKERS" -ge 1 ] || die "--workers must be at least 1"
[ "$MAX_POS" = 0 ] || [ "$MAX_POS" -ge 8 ] || die "--max-positions must be 0 (no limit) or at least 8"
[ -d "$RAW_DIR" ] || die "$RAW_DIR: no such folder"
if [ "$BPE" = gpt2 ]; then
  [ -n "$GPT2_DIR" ] || die "--bpe gpt2 needs --gpt2-dir DIR with encoder.json, vocab.bpe and dict.txt"
  for f in encoder.json vocab.bpe dict.txt; do [ -f "$GPT2_DIR/$f" ] || die "$GPT2_DIR/$f: missing file"; done
  GPT2_DIR="$(cd "$GPT2_DIR" && pwd)"
fi
if [ "$BPE" = hf ]; then
  check_hf_dir "--bpe hf" "$HF_DIR"
  HF_DIR="$(cd "$HF_DIR" && pwd)"
else
  [ -z "$HF_DIR" ] || die "--hf-dir goes with --bpe hf"
fi
if [ -z "$SPLITS" ]; then
  for s in train val test; do [ -f "$RAW_DIR/$s.jsonl" ] && SPLITS="${SPLITS:+$SPLITS,}$s"; done
  [ -n "$SPLITS" ] || die "$RAW_DIR: none of train.jsonl, val.jsonl, test.jsonl found (or give --splits)"
fi
IFS=, read -r -a SPLIT_LIST <<< "$SPLITS"
HAVE_TRAIN=0
for s in "${SPLIT_LIST[@]}"; do
  [ -f "$RAW_DIR/$s.jsonl" ] || die "$RAW_DIR/$s.jsonl: missing (split $s)"
  [ "$s" != train ] || HAVE_TRAIN=1
  case "$s" in valid) die "name the validation file val.jsonl (the released name); it becomes fairseq's valid" ;; esac
  [[ "$s" =~ ^[A-Za-z0-9_.-]+$ ]] || die "split name $s: use letters, digits, _ . -"
done
[ "$HAVE_TRAIN" = 1 ] || [ "$BPE" != spm ] || die "--bpe spm learns its pieces on the train split: include train"
if [ -e "$OUT_DIR" ] && [ -n "$(ls -A "$OUT_DIR" 2>/dev/null)" ] && [ "$FORCE" != 1 ]; then
  die "$OUT_DIR exists and is not empty (use --force to replace it)"
fi

OUT_PARENT="$(dirname "$OUT_DIR")"
mkdir -p "$OUT_PARENT"
TMP="$(mktemp -d "$OUT_PARENT/.$(basename "$OUT_DIR").tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/raw" "$TMP/bpe" "$TMP/gold"

# 1. jsonl -> raw text columns (framing: fairseq_dpreg/superglue/tasks.py)
echo "== 1/3 framing: $TASK from $RAW_DIR ($SPLITS) =="
"$PY" "$REPO/scripts/superglue_prepare.py" --task "$TASK" --input-dir "$RAW_DIR" --output-dir "$TMP/raw" \
  --splits "$SPLITS"
NUM_INPUTS="$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["inputs"]))' "$TMP/raw/info.json")"

# 2. BPE, column by column (every column of a split has one line per example)
echo "== 2/3 BPE: $BPE =="
if [ "$BPE" = gpt2 ]; then
  ENCODER="$("$PY" -c 'import fairseq,os; print(os.path.join(os.path.dirname(fairseq.__file__), "examples", "roberta", "multiprocessing_bpe_encoder.py"))')"
  [ -f "$ENCODER" ] || die "$ENCODER: fairseq's GPT-2 BPE encoder is missing from this fairseq install"
  for s in "${SPLIT_LIST[@]}"; do
    INS=(); OUTS=()
    for ((k = 0; k < NUM_INPUTS; k++)); do INS+=("$TMP/raw/$s.input$k"); OUTS+=("$TMP/bpe/$s.input$k"); done
    "$PY" "$ENCODER" --encoder-json "$GPT2_DIR/encoder.json" --vocab-bpe "$GPT2_DIR/vocab.bpe" \
      --inputs "${INS[@]}" --outputs "${OUTS[@]}" --workers "$WORKERS" --keep-empty
  done
elif [ "$BPE" = hf ]; then
  # every column of every split in one process (the tokenizer loads once): one line of id symbols per line
  INS=(); OUTS=()
  for s in "${SPLIT_LIST[@]}"; do
    for ((k = 0; k < NUM_INPUTS; k++)); do INS+=("$TMP/raw/$s.input$k"); OUTS+=("$TMP/bpe/$s.input$k"); done
  done
  RAYON_NUM_THREADS="$WORKERS" "$PY" -m fairseq_dpreg.pretrained.tokenizer --hf-dir "$HF_DIR" \
    --inputs "${INS[@]}" --outputs "${OUTS[@]}"
else
  "$PY" - "$TMP" "$VOCAB" "$WORKERS" "$SPLITS" "$NUM_INPUTS" <<'PYEOF'
# Train SentencePiece on the training split's text (every input column), then encode every column.
import sys

import sentencepiece as spm

tmp, vocab, workers, splits, num_inputs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(","), int(sys.argv[5])
text = []
for k in range(num_inputs):
    with open(f"{tmp}/raw/train.input{k}", encoding="utf-8") as f:
        text.extend(line.rstrip("\n") for line in f)
text = [t for t in text if t.strip()]
if not text:
    sys.exit("prepare.sh: error: the train split has no text to learn SentencePiece pieces from")
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(text), model_prefix=f"{tmp}/spm", vocab_size=vocab, hard_vocab_limit=False,
    character_coverage=1.0, model_type="unigram", num_threads=workers, minloglevel=2,
    bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
)
sp = spm.SentencePieceProcessor(model_file=f"{tmp}/spm.model")
for split in splits:
    for k in range(num_inputs):
        with open(f"{tmp}/raw/{split}.input{k}", encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f]
        with open(f"{tmp}/bpe/{split}.input{k}", "w", encoding="utf-8", newline="\n") as f:
            for pieces in sp.encode(lines, out_type=str):
                f.write(" ".join(pieces) + "\n")
print(f"SentencePiece: {sp.get_piece_size()} pieces (asked for {vocab}) from {len(text)} training texts")
PYEOF
fi

# 3. length limit, dictionaries, fairseq-preprocess of every column (one process: fairseq is imported once;
#    each job is parsed by fairseq-preprocess's own parser and printed as the equivalent command)
echo "== 3/3 binarize (fairseq-preprocess) -> $OUT_DIR =="
"$PY" - "$TMP" "$RAW_DIR" "$SPLITS" "$BPE" "${GPT2_DIR:-}" "$MAX_POS" "$WORKERS" "$VOCAB" "${HF_DIR:-}" <<'PYEOF'
import json
import logging
import os
import shlex
import shutil
import sys

tmp, raw_dir, splits, bpe, gpt2_dir, max_pos, workers, vocab, hf_dir = sys.argv[1:10]
splits, max_pos = splits.split(","), int(max_pos)
info = json.load(open(f"{tmp}/raw/info.json", encoding="utf-8"))
ranking = info["fairseq_task"] == "sentence_ranking"
num_inputs = len(info["inputs"])
fsplit = {s: ("valid" if s == "val" else s) for s in splits}


def read(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split() for line in f]


def write(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(" ".join(row) + "\n")


# -- length limit: the model sees <s> input0 </s> </s> input1 </s> (sentence_prediction) or
#    <s> input_k </s> </s> input0 </s> (sentence_ranking, one sequence per choice k); cut input0 first.
cut_total = {}
for s in splits:
    cols = [read(f"{tmp}/bpe/{s}.input{k}") for k in range(num_inputs)]
    if len({len(c) for c in cols}) != 1:
        sys.exit(f"prepare.sh: error: split {s}: the BPE columns have different line counts "
                 f"{[len(c) for c in cols]}")
    n_cut = 0
    if max_pos > 0:
        specials = 2 if num_inputs == 1 else 4
        for i in range(len(cols[0])):
            others = [cols[k][i] for k in range(1, num_inputs)]
            rest = (max(len(o) for o in others) if ranking else sum(len(o) for o in others)) if others else 0
            budget = max_pos - specials - rest
            if len(cols[0][i]) > max(budget, 0):
                cols[0][i] = cols[0][i][: max(budget, 0)]
                n_cut += 1
            if budget < 0:  # the other inputs alone are too long: cut them to an equal share
                share = (max_pos - specials) if ranking else (max_pos - specials) // len(others)
                for k in range(1, num_inputs):
                    cols[k][i] = cols[k][i][:share]
    for k in range(num_inputs):
        write(f"{tmp}/bpe/{s}.input{k}", cols[k])
    cut_total[s] = n_cut
    if n_cut:
        print(f"{s}: {n_cut} of {len(cols[0])} examples longer than {max_pos} tokens: the end of input0 was cut")

import fairseq  # noqa: E402  (heavy: after the cheap checks)
from fairseq import options  # noqa: E402
from fairseq_cli import preprocess  # noqa: E402

jobs = []  # (argv, rename: {fairseq output name: our split name}, destdir)


def column_jobs(name, srcdict, prefix_of):
    """fairseq-preprocess argv lists for one column: train/valid/test in one call, other splits one call each."""
    dest = f"{tmp}/out/{name}"
    std = {"train": "--trainpref", "valid": "--validpref", "test": "--testpref"}
    argv = ["--only-source", "--srcdict", srcdict, "--destdir", dest, "--workers", workers]
    extra = []
    for s in splits:
        if not os.path.exists(prefix_of(s)):
            continue
        if fsplit[s] in std:
            argv += [std[fsplit[s]], prefix_of(s)]
        else:
            extra.append(s)
    if len(argv) > 7:
        jobs.append((argv, {}, dest))
    for s in extra:  # a split with another name goes through --testpref and is renamed
        side = f"{tmp}/out/.{name}.{s}"
        jobs.append((["--only-source", "--srcdict", srcdict, "--destdir", side, "--workers", workers,
                      "--testpref", prefix_of(s)], {"test": s}, dest))


# dictionary of the inputs: the checkpoint's (gpt2), the converted folder's (hf) or one joined dictionary built
# on the train split (spm)
if bpe == "gpt2":
    input_dict = os.path.join(gpt2_dir, "dict.txt")
elif bpe == "hf":
    input_dict = os.path.join(hf_dir, "dict.txt")
else:
    with open(f"{tmp}/bpe/all.train", "w", encoding="utf-8") as out:
        for k in range(num_inputs):
            with open(f"{tmp}/bpe/train.input{k}", encoding="utf-8") as f:
                shutil.copyfileobj(f, out)
    input_dict = f"{tmp}/dict/dict.txt"
    jobs.append((["--only-source", "--trainpref", f"{tmp}/bpe/all.train", "--destdir", f"{tmp}/dict",
                  "--dict-only", "--workers", workers], {}, None))
for k in range(num_inputs):
    column_jobs(f"input{k}", input_dict, lambda s, k=k: f"{tmp}/bpe/{s}.input{k}")

os.makedirs(f"{tmp}/out/label", exist_ok=True)
if ranking:  # sentence_ranking reads label/{split}.label as raw integers
    for s in splits:
        if os.path.exists(f"{tmp}/raw/{s}.label"):
            shutil.copyfile(f"{tmp}/raw/{s}.label", f"{tmp}/out/label/{fsplit[s]}.label")
else:  # the label dictionary lists the labels in info.json order: class k = info["labels"][k]
    with open(f"{tmp}/label.dict.txt", "w", encoding="utf-8") as f:
        for label in info["labels"]:
            f.write(f"{label} 1\n")
    column_jobs("label", f"{tmp}/label.dict.txt", lambda s: f"{tmp}/raw/{s}.label")

root_handlers = list(logging.getLogger().handlers)
pp_logger = logging.getLogger("fairseq_cli.preprocess")
parser = options.get_preprocessing_parser()
for argv, rename, dest in jobs:
    print("+ fairseq-preprocess " + " ".join(shlex.quote(a) for a in argv), flush=True)
    handlers = list(pp_logger.handlers)
    try:
        preprocess.main(parser.parse_args(argv))
    finally:  # main() adds a log file handler per call: close it so the next job does not write there
        for h in pp_logger.handlers[len(handlers):]:
            pp_logger.removeHandler(h)
            h.close()
    if rename:
        side = argv[argv.index("--destdir") + 1]
        os.makedirs(dest, exist_ok=True)
        for old, new in rename.items():
            for ext in ("bin", "idx"):
                os.replace(f"{side}/{old}.{ext}", f"{dest}/{new}.{ext}")
        if not os.path.exists(f"{dest}/dict.txt"):
            shutil.copyfile(f"{side}/dict.txt", f"{dest}/dict.txt")
        shutil.rmtree(side)

# ids, gold references, description
counts = {}
for s in splits:
    shutil.copyfile(f"{tmp}/raw/{s}.ids", f"{tmp}/out/{fsplit[s]}.ids")
    c = info["splits"][s]
    if c["labelled"]:
        os.makedirs(f"{tmp}/out/gold", exist_ok=True)
        shutil.copyfile(os.path.join(raw_dir, f"{s}.jsonl"), f"{tmp}/out/gold/{fsplit[s]}.jsonl")
    counts[fsplit[s]] = {"source": f"{s}.jsonl", "examples": c["examples"], "labelled": c["labelled"],
                         "truncated": cut_total[s]}
if bpe == "spm":
    for ext in ("model", "vocab"):
        shutil.copyfile(f"{tmp}/spm.{ext}", f"{tmp}/out/spm.{ext}")
desc = {
    "task": info["task"],
    "fairseq_task": info["fairseq_task"],
    "criterion": info["fairseq_task"],
    "inputs": info["inputs"],
    "labels": info["labels"],
    "num_classes": info["num_classes"],
    "bpe": bpe,
    **({"hf_dir": hf_dir} if bpe == "hf" else {}),
    "vocab_size": int(vocab) if bpe == "spm" else None,
    "max_positions": max_pos,
    "splits": counts,
}
with open(f"{tmp}/out/superglue.json", "w", encoding="utf-8") as f:
    f.write(json.dumps(desc, indent=2) + "\n")
for s, c in counts.items():
    print(f"{info['task']} {s}: {c['examples']} examples ({'labelled' if c['labelled'] else 'unlabelled'})")
PYEOF

if [ -e "$OUT_DIR" ]; then rm -rf "$OUT_DIR"; fi
mv "$TMP/out" "$OUT_DIR"
rm -rf "$TMP"
trap - EXIT
echo "== done: $OUT_DIR =="
