#!/usr/bin/env bash
# Extractive QA evaluation: predict with a checkpoint, then score with scripts/qa_eval.py.
#
#   examples/squad2/evaluate.sh DATA_BIN CHECKPOINT OUT_DIR [--split valid] [--gold FILE]
#                               [extra scripts/qa_predict.py flags, e.g. --max-answer-len 30 --cpu]
#
# Writes OUT_DIR/{split}.pred.json ({question_id: answer}, "" = no answer), OUT_DIR/{split}.na_prob.json
# and OUT_DIR/{split}.metrics.json, and prints the metrics. The reference is DATA_BIN/gold/{split}.* (kept by
# prepare.sh) unless --gold is given. SQuAD 2.0 data: official EM/F1 (HasAns/NoAns, best thresholds from
# the no-answer probabilities). MRQA data: MRQA EM/F1, and the prediction always answers (--force-answer).
# Environment: PYTHON (which interpreter).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
[ $# -ge 3 ] || usage 2
DATA_BIN="$1"; CKPT="$2"; OUT_DIR="$3"; shift 3
SPLIT=valid; GOLD=""; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --split) SPLIT="$2"; shift 2 ;;
    --gold) GOLD="$2"; shift 2 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
[ -f "$CKPT" ] || die "$CKPT: missing checkpoint"
[ -f "$DATA_BIN/$SPLIT.idx" ] || die "$DATA_BIN/$SPLIT.idx: missing (run prepare.sh with this split)"
if [ -z "$GOLD" ]; then
  for ext in json jsonl jsonl.gz json.gz; do
    if [ -f "$DATA_BIN/gold/$SPLIT.$ext" ]; then GOLD="$DATA_BIN/gold/$SPLIT.$ext"; break; fi
  done
fi
[ -n "$GOLD" ] && [ -f "$GOLD" ] || die "no reference for split $SPLIT in $DATA_BIN/gold (use --gold FILE)"
FORMAT="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("formats", {}).get(sys.argv[2], "squad"))' \
  "$DATA_BIN/qa_prepare.json" "$SPLIT")"

mkdir -p "$OUT_DIR"
PRED="$OUT_DIR/$SPLIT.pred.json"; NA="$OUT_DIR/$SPLIT.na_prob.json"; METRICS="$OUT_DIR/$SPLIT.metrics.json"
PRED_ARGS=(--path "$CKPT" --data "$DATA_BIN" --split "$SPLIT" --out "$PRED" --na-prob-out "$NA")
EVAL_ARGS=("$GOLD" "$PRED" --out-file "$METRICS")
if [ "$FORMAT" = mrqa ]; then
  PRED_ARGS+=(--force-answer)
else
  EVAL_ARGS+=(--na-prob-file "$NA")
fi

echo "== predict: $CKPT on $DATA_BIN/$SPLIT -> $PRED =="
"$PY" "$REPO/scripts/qa_predict.py" "${PRED_ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
echo "== evaluate ($FORMAT): $GOLD =="
"$PY" "$REPO/scripts/qa_eval.py" "${EVAL_ARGS[@]}"
