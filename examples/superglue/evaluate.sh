#!/usr/bin/env bash
# SuperGLUE evaluation: predict a split with a checkpoint, then score it with scripts/superglue_eval.py.
#
#   examples/superglue/evaluate.sh DATA_BIN CHECKPOINT OUT_DIR [--split valid] [--gold FILE]
#                                  [extra predict.py flags, e.g. --cpu --batch-size 64 --fp16]
#
# Writes OUT_DIR/{split}.pred.jsonl (SuperGLUE submission format, see predict.py -h) and
# OUT_DIR/{split}.metrics.json, and prints the metrics. The reference is DATA_BIN/gold/{split}.jsonl (kept by
# prepare.sh) unless --gold is given. An unlabelled split (test) is predicted but not scored: its
# {split}.pred.jsonl is what the SuperGLUE server takes (file names: BoolQ.jsonl, CB.jsonl, ...).
# Metrics: accuracy (BoolQ, COPA, RTE, WiC, WSC), accuracy + macro-F1 (CB), F1a + EM (MultiRC),
# F1 + EM (ReCoRD); all x 100.
# Environment: PYTHON (which interpreter).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
[ $# -ge 3 ] || usage 2
DATA_BIN="$1"; CKPT="$2"; OUT_DIR="$3"; shift 3
SPLIT=valid; GOLD=""; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --split) SPLIT="${2:?--split needs a value}"; shift 2 ;;
    --gold) GOLD="${2:?--gold needs a value}"; shift 2 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
[ -f "$CKPT" ] || die "$CKPT: missing checkpoint"
[ -f "$DATA_BIN/superglue.json" ] || die "$DATA_BIN/superglue.json: missing (run prepare.sh first)"
[ -f "$DATA_BIN/$SPLIT.ids" ] || die "$DATA_BIN/$SPLIT.ids: missing (run prepare.sh with this split)"
TASK="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["task"])' "$DATA_BIN/superglue.json")"
[ -n "$GOLD" ] || [ ! -f "$DATA_BIN/gold/$SPLIT.jsonl" ] || GOLD="$DATA_BIN/gold/$SPLIT.jsonl"

mkdir -p "$OUT_DIR"
PRED="$OUT_DIR/$SPLIT.pred.jsonl"; METRICS="$OUT_DIR/$SPLIT.metrics.json"
echo "== predict: $TASK, $CKPT on $DATA_BIN/$SPLIT -> $PRED =="
"$PY" "$HERE/predict.py" --path "$CKPT" --data "$DATA_BIN" --split "$SPLIT" --out "$PRED" ${EXTRA[@]+"${EXTRA[@]}"}
if [ -z "$GOLD" ]; then
  echo "== no labelled reference for split $SPLIT (unlabelled): predictions only, in $PRED =="
  exit 0
fi
[ -f "$GOLD" ] || die "$GOLD: missing reference"
echo "== evaluate: $GOLD =="
"$PY" "$REPO/scripts/superglue_eval.py" --task "$TASK" --gold "$GOLD" --pred "$PRED" --out-file "$METRICS"
