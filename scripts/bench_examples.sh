#!/usr/bin/env bash
# Times the example READMEs' CPU commands as written, one after the other (run it on a quiet machine): the
# QA quick start (synthetic SQuAD-style set, cpu-tiny plain and dotprod, 600 updates each) and the SuperGLUE
# CPU smoke run (RTE from ../shared/data/superglue, cpu-tiny, 100 updates each). Prints one line per command:
# its wall-clock seconds and exit status; the outputs stay in OUT (default: a temporary folder, kept).
# The timings printed in examples/squad2/README.md and examples/superglue/README.md come from this script.
# Usage: scripts/bench_examples.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-$(mktemp -d "${TMPDIR:-/tmp}/bench_examples.XXXXXX")}"
RTE="${RTE:-../shared/data/superglue/RTE}"
mkdir -p "$OUT"
t() {  # NAME CMD...: runs CMD with its output in OUT/NAME.log, prints the seconds it took
  local name=$1 start=$SECONDS rc; shift
  "$@" > "$OUT/$name.log" 2>&1; rc=$?
  printf "%-40s %4d s  exit %d\n" "$name" $((SECONDS - start)) "$rc"
}
t "squad2 prepare.sh --synthetic" examples/squad2/prepare.sh "$OUT/qa-synth" --synthetic
t "squad2 train.sh cpu-tiny plain" examples/squad2/train.sh cpu-tiny plain "$OUT/qa-synth" "$OUT/qa-plain"
t "squad2 evaluate.sh (plain) --cpu" examples/squad2/evaluate.sh "$OUT/qa-synth" "$OUT/qa-plain/checkpoint_best.pt" \
  "$OUT/qa-plain-out" --cpu
t "squad2 train.sh cpu-tiny dotprod" examples/squad2/train.sh cpu-tiny dotprod "$OUT/qa-synth" "$OUT/qa-dotprod"
t "squad2 evaluate.sh (dotprod) --cpu" examples/squad2/evaluate.sh "$OUT/qa-synth" \
  "$OUT/qa-dotprod/checkpoint_best.pt" "$OUT/qa-dotprod-out" --cpu
t "superglue prepare.sh RTE --bpe spm" examples/superglue/prepare.sh RTE "$RTE" "$OUT/rte-spm" --bpe spm \
  --vocab-size 8000
t "superglue train.sh cpu-tiny plain 100" examples/superglue/train.sh cpu-tiny plain "$OUT/rte-spm" \
  "$OUT/rte-plain" --max-update 100
t "superglue train.sh cpu-tiny dotprod 100" examples/superglue/train.sh cpu-tiny dotprod "$OUT/rte-spm" \
  "$OUT/rte-dotprod" --max-update 100
t "superglue evaluate.sh --cpu" examples/superglue/evaluate.sh "$OUT/rte-spm" "$OUT/rte-dotprod/checkpoint_best.pt" \
  "$OUT/rte-out" --cpu
echo "outputs and logs: $OUT"
