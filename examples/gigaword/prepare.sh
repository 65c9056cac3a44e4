#!/usr/bin/env bash
# Gigaword data preparation: validate + clean -> SentencePiece -> fairseq-preprocess (joined dictionary).
#
#   examples/gigaword/prepare.sh IN_DIR OUT_DIR [--vocab-size 8000] [--model-type unigram|bpe]
#                                [--workers N] [--force]
#   examples/gigaword/prepare.sh IN_DIR OUT_DIR --bpe gpt2 --gpt2-dir DIR   # BART route, see README
#   examples/gigaword/prepare.sh IN_DIR OUT_DIR --bpe hf --hf-dir DIR       # a converted encoder's tokenizer
#                                (MiniLM WordPiece) and its dict.txt on both sides: the minilm-warm route
#
# IN_DIR holds the Rush et al. (2015) release under either naming:
#   train.article.txt/train.title.txt, valid.article.txt/valid.title.txt (or *.filter.txt),
#   test as input.txt/task1_ref0.txt (also inside train/ and Giga/ subfolders, as in "sumdata"),
#   or {train,valid,test}.src/.tgt. The test split is optional.
# OUT_DIR (the DATA_BIN of train.sh/evaluate.sh) gets: the fairseq binaries and dict.{src,tgt}.txt,
#   spm.model/spm.vocab, raw/{split}.{src,tgt} (the input as given: references for scoring),
#   clean/ and pieces/ (intermediate text), prepare.json (what was done).
# Everything is built in a temporary folder beside OUT_DIR and renamed into place at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit
PREPROCESS="$(fairseq_cmd fairseq-preprocess FAIRSEQ_PREPROCESS)"

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
[ $# -ge 2 ] || usage 2
IN_DIR="$1"; OUT_DIR="$2"; shift 2
VOCAB=8000; MODEL_TYPE=unigram; WORKERS=1; FORCE=0; BPE=spm; GPT2_DIR=""; HF_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --vocab-size) VOCAB="$2"; shift 2 ;;
    --model-type) MODEL_TYPE="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --bpe) BPE="$2"; shift 2 ;;
    --gpt2-dir) GPT2_DIR="$2"; shift 2 ;;
    --hf-dir) HF_DIR="${2:?--hf-dir needs a value}"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage 0 ;;
    *) die "unknown option $1" ;;
  esac
done
[ -d "$IN_DIR" ] || die "$IN_DIR: missing input folder"
case "$MODEL_TYPE" in unigram|bpe) ;; *) die "--model-type must be unigram or bpe" ;; esac
case "$BPE" in spm|gpt2|hf) ;; *) die "--bpe must be spm, gpt2 or hf" ;; esac
if [ "$BPE" = hf ]; then
  check_hf_dir "--bpe hf" "$HF_DIR"
  HF_DIR="$(cd "$HF_DIR" && pwd)"
else
  [ -z "$HF_DIR" ] || die "--hf-dir goes with --bpe hf"
fi
if [ -e "$OUT_DIR" ] && [ -n "$(ls -A "$OUT_DIR" 2>/dev/null)" ] && [ "$FORCE" != 1 ]; then
  die "$OUT_DIR exists and is not empty (use --force to replace it)"
fi

OUT_PARENT="$(dirname "$OUT_DIR")"
mkdir -p "$OUT_PARENT"
TMP="$(mktemp -d "$OUT_PARENT/.$(basename "$OUT_DIR").tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

STAGE_ARGS=(--vocab-size "$VOCAB" --model-type "$MODEL_TYPE" --workers "$WORKERS" --bpe "$BPE")
DICT_ARGS=(--joined-dictionary)
if [ "$BPE" = gpt2 ]; then
  [ -n "$GPT2_DIR" ] || die "--bpe gpt2 needs --gpt2-dir DIR with encoder.json, vocab.bpe and dict.txt"
  for f in encoder.json vocab.bpe dict.txt; do
    [ -f "$GPT2_DIR/$f" ] || die "$GPT2_DIR/$f: missing file"
  done
  STAGE_ARGS+=(--gpt2-encoder "$GPT2_DIR/encoder.json" --gpt2-vocab "$GPT2_DIR/vocab.bpe")
  DICT_ARGS=(--srcdict "$GPT2_DIR/dict.txt" --tgtdict "$GPT2_DIR/dict.txt")
elif [ "$BPE" = hf ]; then
  STAGE_ARGS+=(--hf-dir "$HF_DIR")
  DICT_ARGS=(--srcdict "$HF_DIR/dict.txt" --tgtdict "$HF_DIR/dict.txt")
fi

echo "== prepare: validate, clean, encode ($BPE) =="
"$PY" "$REPO/scripts/gigaword_data.py" stage "$IN_DIR" "$TMP" "${STAGE_ARGS[@]}"

PREFS=(--trainpref "$TMP/pieces/train" --validpref "$TMP/pieces/valid")
[ -f "$TMP/pieces/test.src" ] && PREFS+=(--testpref "$TMP/pieces/test")

echo "== prepare: fairseq-preprocess =="
"$PREPROCESS" --source-lang src --target-lang tgt "${PREFS[@]}" "${DICT_ARGS[@]}" \
  --destdir "$TMP" --workers "$WORKERS"

# Into place: the old OUT_DIR (with --force) is moved aside first and removed only after the rename.
OLD=""
if [ -e "$OUT_DIR" ]; then
  OLD="$(mktemp -d "$OUT_PARENT/.$(basename "$OUT_DIR").old.XXXXXX")"
  mv "$OUT_DIR" "$OLD/"
fi
mv "$TMP" "$OUT_DIR"
trap - EXIT
[ -n "$OLD" ] && rm -rf "$OLD"
echo "== prepare: done -> $OUT_DIR =="
