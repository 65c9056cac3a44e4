#!/usr/bin/env bash
# Gigaword evaluation: one hypothesis for every source line, in input order, then ROUGE.
#
#   examples/gigaword/evaluate.sh DATA_BIN CHECKPOINT SPLIT_RAW_SRC SPLIT_RAW_REF [options] [fairseq-generate flags]
#
# e.g. examples/gigaword/evaluate.sh data-bin ckpt/checkpoint_best.pt data-bin/raw/valid.src data-bin/raw/valid.tgt
#
# Options of this script (the rest goes to fairseq-generate after its defaults, so it wins):
#   --split NAME                 name in the output files (default: SPLIT_RAW_SRC's name up to the first dot)
#   --max-source-positions N     truncate sources to N positions (default: read from the checkpoint)
# fairseq-generate defaults: --beam 5 --lenpen 2.0 --max-len-b 50 --batch-size 64 (lenpen chosen on 1,000
# Gigaword valid pairs: see examples/gigaword/README.md); e.g. add
#   --beam 4 --min-len 4 --max-len-b 30 --lenpen 1.2
# Steps: clean + encode the raw source with DATA_BIN's codec (SentencePiece, GPT-2 BPE, or --bpe hf: the encoder's
# WordPiece, [CLS] first, UNK as [UNK]; decoded by joining ## continuations), truncate sources
# longer than the model's positions, give an empty line the source "UNK"; binarize with DATA_BIN's
# dictionaries; fairseq-generate without --skip-invalid-size-inputs-valid-test (an invalid input is an error,
# never a silent drop); put the hypotheses back in input order by their H-<id> and check that every id is
# there once and that S-<id> is input line <id>; decode, write UNK for unknown words, lowercase; ROUGE.
# Writes next to CHECKPOINT: hyps.<split>.txt, rouge.<split>.json, generate.<split>.txt (raw output).
# ROUGE_BACKEND=rouge155 scores with the ROUGE-1.5.5 Perl script instead of rouge-score (scripts/rouge.py --backend).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit
PREPROCESS="$(fairseq_cmd fairseq-preprocess FAIRSEQ_PREPROCESS)"
GENERATE="$(fairseq_cmd fairseq-generate FAIRSEQ_GENERATE)"
ROUGE="${ROUGE_PY:-$REPO/scripts/rouge.py}"
ROUGE_ARGS=()
[ -z "${ROUGE_BACKEND:-}" ] || ROUGE_ARGS=(--backend "$ROUGE_BACKEND")

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
[ $# -ge 4 ] || usage 2
DATA_BIN="$1"; CKPT="$2"; RAW_SRC="$3"; RAW_REF="$4"; shift 4
SPLIT=""; MAXPOS=()
GEN_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --split) SPLIT="$2"; shift 2 ;;
    --max-source-positions) MAXPOS=(--max-source-positions "$2"); shift 2 ;;
    --post-process|--post-process=*|--remove-bpe|--remove-bpe=*|--bpe|--bpe=*|--tokenizer|--tokenizer=*)
      die "$1: leave decoding to this script (it decodes DATA_BIN's codec itself and checks the S- lines)" ;;
    *) GEN_EXTRA+=("$1"); shift ;;
  esac
done
for f in "$DATA_BIN/dict.src.txt" "$DATA_BIN/dict.tgt.txt" "$DATA_BIN/prepare.json" "$CKPT" "$RAW_SRC" "$RAW_REF"; do
  [ -f "$f" ] || die "$f: missing file"
done
[ -n "$SPLIT" ] || SPLIT="$(basename "$RAW_SRC")"; SPLIT="${SPLIT%%.*}"
OUT_DIR="$(cd "$(dirname "$CKPT")" && pwd)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/gigaword-eval.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "== evaluate: encode $RAW_SRC =="
"$PY" "$REPO/scripts/gigaword_data.py" gen-input --data-bin "$DATA_BIN" --checkpoint "$CKPT" \
  --src "$RAW_SRC" --out "$TMP/text/gen" "${MAXPOS[@]}"
"$PREPROCESS" --source-lang src --target-lang tgt --testpref "$TMP/text/gen" --destdir "$TMP/bin" \
  --srcdict "$DATA_BIN/dict.src.txt" --tgtdict "$DATA_BIN/dict.tgt.txt" --workers 1 >"$TMP/preprocess.log" 2>&1 \
  || { cat "$TMP/preprocess.log" >&2; die "fairseq-preprocess failed"; }

# The plugin's tasks/optimizers must be importable when the checkpoint was trained with them.
USER_DIR=()
[ -d "$REPO/fairseq_dpreg" ] && USER_DIR=(--user-dir "$REPO/fairseq_dpreg")

echo "== evaluate: fairseq-generate ($SPLIT) =="
"$GENERATE" "$TMP/bin" "${USER_DIR[@]}" --task translation --source-lang src --target-lang tgt \
  --path "$CKPT" --gen-subset test --beam 5 --lenpen 2.0 --max-len-b 50 --batch-size 64 \
  --required-batch-size-multiple 1 --num-workers 0 \
  "${GEN_EXTRA[@]}" >"$TMP/generate.txt" 2>"$TMP/generate.log" \
  || { tail -n 30 "$TMP/generate.log" >&2; die "fairseq-generate failed (full log above)"; }
grep -oE "Translated [0-9,]+ sentences.*" "$TMP/generate.log" || true

HYPS="$OUT_DIR/hyps.$SPLIT.txt"
"$PY" "$REPO/scripts/gigaword_data.py" collect --data-bin "$DATA_BIN" --generate-output "$TMP/generate.txt" \
  --encoded-src "$TMP/text/gen.src" --out "$HYPS"
cp "$TMP/generate.txt" "$OUT_DIR/.generate.$SPLIT.txt.tmp" && mv -f "$OUT_DIR/.generate.$SPLIT.txt.tmp" "$OUT_DIR/generate.$SPLIT.txt"

echo "== evaluate: ROUGE ($SPLIT) =="
"$PY" "$ROUGE" --hyp "$HYPS" --ref "$RAW_REF" "${ROUGE_ARGS[@]}" --json --out "$OUT_DIR/rouge.$SPLIT.json"
echo "== evaluate: done -> $HYPS, $OUT_DIR/rouge.$SPLIT.json =="
