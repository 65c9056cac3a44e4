#!/usr/bin/env bash
# Extractive QA data preparation: SQuAD 2.0 JSON or MRQA jsonl -> windows -> fairseq binaries.
#
#   examples/squad2/prepare.sh OUT_DIR --train FILE --valid FILE [--test FILE]
#                              [--tokenizer spm|gpt2|hf] [--gpt2-dir DIR] [--hf-dir DIR] [--vocab-size 8000]
#                              [--max-seq-len 384] [--doc-stride 128] [--max-query-len 64] [--force]
#   examples/squad2/prepare.sh OUT_DIR --synthetic [--max-seq-len 128 ...]   # offline smoke data
#
# --train/--valid/--test  SQuAD 2.0 .json (train-v2.0.json, dev-v2.0.json) or MRQA .jsonl[.gz]
#                         (NewsQA, Quasar-T via scripts/quasar_to_mrqa.py, ...)
# --synthetic             generate a small synthetic SQuAD 2.0 set (400 / 60 contexts) instead
# --tokenizer spm         (default) train a SentencePiece model of at most --vocab-size pieces on the training
#                         set (8000; 1000 with --synthetic, whose small vocabulary gives 156)
# --tokenizer gpt2        GPT-2 byte BPE for a RoBERTa checkpoint: --gpt2-dir DIR must hold encoder.json,
#                         vocab.bpe and the checkpoint's dict.txt
# --tokenizer hf          the tokenizer of a converted Hugging Face checkpoint (BERT/MiniLM/ELECTRA WordPiece,
#                         RoBERTa byte BPE): --hf-dir DIR is the folder of scripts/convert_hf_encoder.py, holding
#                         tokenizer.json and dict.txt (Hugging Face ids; fairseq index = 4 + id), the dictionary
# OUT_DIR (the DATA_BIN of train.sh/evaluate.sh) gets dict.txt, {split}.bin/.idx/.spans.npy/*.jsonl,
#   qa_prepare.json (settings), spm.model (spm only) and gold/{split}.<ext>: the input files, used as
#   references by evaluate.sh. Built in a temporary folder beside OUT_DIR and renamed into place at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
OUT_DIR="$1"; shift
TRAIN=""; VALID=""; TEST=""; SYNTHETIC=0; TOKENIZER=spm; GPT2_DIR=""; HF_DIR=""; VOCAB=8000
MAX_SEQ_LEN=""; DOC_STRIDE=""; MAX_QUERY_LEN=""; FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --train) TRAIN="$2"; shift 2 ;;
    --valid) VALID="$2"; shift 2 ;;
    --test) TEST="$2"; shift 2 ;;
    --synthetic) SYNTHETIC=1; shift ;;
    --tokenizer) TOKENIZER="$2"; shift 2 ;;
    --gpt2-dir) GPT2_DIR="$2"; shift 2 ;;
    --hf-dir) HF_DIR="$2"; shift 2 ;;
    --vocab-size) VOCAB="$2"; shift 2 ;;
    --max-seq-len) MAX_SEQ_LEN="$2"; shift 2 ;;
    --doc-stride) DOC_STRIDE="$2"; shift 2 ;;
    --max-query-len) MAX_QUERY_LEN="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage 0 ;;
    *) die "unknown option $1" ;;
  esac
done
case "$TOKENIZER" in spm|gpt2|hf) ;; *) die "--tokenizer must be spm, gpt2 or hf" ;; esac
if [ "$TOKENIZER" = hf ]; then
  check_hf_dir "--tokenizer hf" "$HF_DIR"
else
  [ -z "$HF_DIR" ] || die "--hf-dir goes with --tokenizer hf"
fi
if [ "$SYNTHETIC" = 1 ]; then
  [ -z "$TRAIN$VALID$TEST" ] || die "--synthetic replaces --train/--valid/--test"
  # the synthetic contexts are short: smaller windows keep the CPU recipe fast
  MAX_SEQ_LEN="${MAX_SEQ_LEN:-128}"; DOC_STRIDE="${DOC_STRIDE:-48}"; MAX_QUERY_LEN="${MAX_QUERY_LEN:-32}"
  [ "$VOCAB" != 8000 ] || VOCAB=1000
else
  [ -n "$TRAIN" ] && [ -n "$VALID" ] || die "give --train FILE and --valid FILE (or --synthetic)"
  for f in "$TRAIN" "$VALID" ${TEST:+"$TEST"}; do [ -f "$f" ] || die "$f: missing file"; done
fi
MAX_SEQ_LEN="${MAX_SEQ_LEN:-384}"; DOC_STRIDE="${DOC_STRIDE:-128}"; MAX_QUERY_LEN="${MAX_QUERY_LEN:-64}"
if [ -e "$OUT_DIR" ] && [ -n "$(ls -A "$OUT_DIR" 2>/dev/null)" ] && [ "$FORCE" != 1 ]; then
  die "$OUT_DIR exists and is not empty (use --force to replace it)"
fi

OUT_PARENT="$(dirname "$OUT_DIR")"
mkdir -p "$OUT_PARENT"
TMP="$(mktemp -d "$OUT_PARENT/.$(basename "$OUT_DIR").tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/gold"

# keep the inputs as evaluation references: gold/{split}.json, .jsonl or .jsonl.gz; qa_prepare.py reads the
# user's own files, so its messages and qa_prepare.json name them
copy_gold() {  # split file
  local name ext
  name="$(basename "$2")"
  case "$name" in *.jsonl.gz) ext=jsonl.gz ;; *.json.gz) ext=json.gz ;; *) ext="${name##*.}" ;; esac
  cp "$2" "$TMP/gold/$1.$ext"
}
if [ "$SYNTHETIC" = 1 ]; then
  "$PY" "$REPO/scripts/qa_prepare.py" --make-synthetic "$TMP/gold"
  mv "$TMP/gold/dev.json" "$TMP/gold/valid.json"
  TRAIN="$TMP/gold/train.json"; VALID="$TMP/gold/valid.json"
else
  copy_gold train "$TRAIN"; copy_gold valid "$VALID"
  [ -z "$TEST" ] || copy_gold test "$TEST"
fi
ARGS=(--destdir "$TMP" --train "$TRAIN" --valid "$VALID")
[ -z "$TEST" ] || ARGS+=(--test "$TEST")
ARGS+=(--max-seq-len "$MAX_SEQ_LEN" --doc-stride "$DOC_STRIDE" --max-query-len "$MAX_QUERY_LEN")
if [ "$TOKENIZER" = gpt2 ]; then
  [ -n "$GPT2_DIR" ] || die "--tokenizer gpt2 needs --gpt2-dir DIR with encoder.json, vocab.bpe and dict.txt"
  for f in encoder.json vocab.bpe dict.txt; do [ -f "$GPT2_DIR/$f" ] || die "$GPT2_DIR/$f: missing file"; done
  ARGS+=(--tokenizer gpt2 --gpt2-encoder-json "$GPT2_DIR/encoder.json" --gpt2-vocab-bpe "$GPT2_DIR/vocab.bpe"
         --dict "$GPT2_DIR/dict.txt")
elif [ "$TOKENIZER" = hf ]; then
  ARGS+=(--tokenizer hf --hf-dir "$HF_DIR")
else
  ARGS+=(--tokenizer sentencepiece --spm-vocab-size "$VOCAB")
fi

echo "== prepare: $TOKENIZER, windows of $MAX_SEQ_LEN tokens, stride $DOC_STRIDE -> $OUT_DIR =="
"$PY" "$REPO/scripts/qa_prepare.py" "${ARGS[@]}"

if [ -e "$OUT_DIR" ]; then rm -rf "$OUT_DIR"; fi
mv "$TMP" "$OUT_DIR"
trap - EXIT
echo "== done: $OUT_DIR =="
