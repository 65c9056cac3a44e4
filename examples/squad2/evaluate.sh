#!/usr/bin/env bash
# Extractive QA evaluation: predict with a checkpoint, then score with scripts/qa_eval.py.
#
#   examples/squad2/evaluate.sh DATA_BIN CHECKPOINT OUT_DIR [--split valid] [--gold FILE]
#                               [--threshold-from SPLIT]
#                               [extra scripts/qa_predict.py flags, e.g. --max-answer-len 30 --cpu]
#
# --threshold-from SPLIT  (SQuAD 2.0 data) tune the no-answer threshold on another labelled split first, as
#                         BERT's SQuAD 2.0 runs tune theirs on dev: SPLIT is predicted with forced answers, the
#                         official evaluator's best_f1_thresh on it becomes --null-threshold (its log-odds) for
#                         the split scored (OUT_DIR/threshold.json records it). Without it the threshold is 0.
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
SPLIT=valid; GOLD=""; THRESH_SPLIT=""; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --split) SPLIT="$2"; shift 2 ;;
    --gold) GOLD="$2"; shift 2 ;;
    --threshold-from) THRESH_SPLIT="$2"; shift 2 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
[ -f "$CKPT" ] || die "$CKPT: missing checkpoint"
[ -f "$DATA_BIN/$SPLIT.idx" ] || die "$DATA_BIN/$SPLIT.idx: missing (run prepare.sh with this split)"
gold_of() {  # the reference prepare.sh kept for split $1
  local ext
  for ext in json jsonl jsonl.gz json.gz; do
    if [ -f "$DATA_BIN/gold/$1.$ext" ]; then echo "$DATA_BIN/gold/$1.$ext"; return; fi
  done
}
[ -n "$GOLD" ] || GOLD="$(gold_of "$SPLIT")"
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

if [ -n "$THRESH_SPLIT" ]; then
  [ "$FORMAT" != mrqa ] || die "--threshold-from: MRQA data always answers; there is no no-answer threshold"
  [ "$THRESH_SPLIT" != "$SPLIT" ] || die "--threshold-from $THRESH_SPLIT: tune on another split than the one scored"
  [ -f "$DATA_BIN/$THRESH_SPLIT.idx" ] || die "$DATA_BIN/$THRESH_SPLIT.idx: missing (--threshold-from)"
  TGOLD="$(gold_of "$THRESH_SPLIT")"
  [ -n "$TGOLD" ] || die "no reference for split $THRESH_SPLIT in $DATA_BIN/gold (--threshold-from)"
  T="$OUT_DIR/threshold-$THRESH_SPLIT"
  echo "== no-answer threshold: $CKPT on $DATA_BIN/$THRESH_SPLIT, answers forced =="
  "$PY" "$REPO/scripts/qa_predict.py" --path "$CKPT" --data "$DATA_BIN" --split "$THRESH_SPLIT" --out "$T.pred.json" \
    --na-prob-out "$T.na_prob.json" --force-answer ${EXTRA[@]+"${EXTRA[@]}"}
  "$PY" "$REPO/scripts/qa_eval.py" "$TGOLD" "$T.pred.json" --na-prob-file "$T.na_prob.json" --out-file "$T.metrics.json" \
    > /dev/null
  NULL_T="$("$PY" - "$T.metrics.json" "$OUT_DIR/threshold.json" "$THRESH_SPLIT" <<'PYEOF'
import json, math, sys

m = json.load(open(sys.argv[1]))
p = min(max(float(m["best_f1_thresh"]), 1e-12), 1 - 1e-12)
t = math.log(p / (1 - p))  # na_prob = sigmoid(null - best span): answer when null - best span <= logit(p)
from fairseq_dpreg.atomic import write_json_atomic
write_json_atomic(sys.argv[2], {"tuned_on": sys.argv[3], "best_f1_thresh": m["best_f1_thresh"],
                                "best_f1": m["best_f1"], "null_threshold": t})
print(repr(t))
PYEOF
)"
  echo "== tuned on $THRESH_SPLIT: best_f1_thresh $(cat "$OUT_DIR/threshold.json" | tr -d '\n ') =="
  PRED_ARGS+=(--null-threshold "$NULL_T")
fi

echo "== predict: $CKPT on $DATA_BIN/$SPLIT -> $PRED =="
"$PY" "$REPO/scripts/qa_predict.py" "${PRED_ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
echo "== evaluate ($FORMAT): $GOLD =="
"$PY" "$REPO/scripts/qa_eval.py" "${EVAL_ARGS[@]}"
