#!/usr/bin/env bash
# The project's prepared GPU check, one command for a machine with one NVIDIA GPU: about 5 minutes, estimated; not
# yet run on a GPU. Needs the project's environment there (fairseq and this package installed as `make install`
# does; no network). Prints figures per case and a summary table, exits 1 if a check failed. Writes two files
# to $OUT: gpu_check.json (the figures, by scripts/gpu_check.py) and logs.tar.gz (every run's log); data and
# checkpoints live in a temporary folder. Env: PY (.venv/bin/python), OUT (gpu_check_out), UPDATES (300).
#   1 core: the regularized update G (dotprod, central, relative, lam 0.1) of a small GELU transformer in amp (loss
#     scale 2^12; radius 0.1, the GPU recipes', and 0.01), bf16 autocast and fp16 weights against fp32 (r 0.01):
#     cosine > 0.99 (fp16 weights 0.95), no skip; amp at 0.1 also: the regularizing term alone against fp32's,
#     cosine > 0.95 (recorded for the other cases); with CUDA also the radius sweep of the README's table
#   2 loss scale: overflows injected at train_step calls 3, 7, 8 (--fp16, --memory-efficient-fp16, --amp): the
#     regularized run's (updates, loss scale) after every call equals plain training's
#   3 amp vs fp32, UPDATES updates: final losses within 0.5, <= 1% skipped (amp's loss-scale overflows aside);
#     --fp16 with the default radius stops at start-up
#   4 epoch end: 2 ranks on one device (gloo; c10d, legacy_ddp), 49 pairs (rank 1 gets the dummy batch at each epoch
#     end) against 1 process with --update-freq 2: parameters within 1e-4, done within 180 s (a hang is killed)
# Without CUDA: a reduced run (tiny model; fp16/amp paths through DPREG_EMULATE_GPU=1, see scripts/dist_worker.py;
# one thread a process); check 1's low-precision cases print SKIPPED (no CUDA).
# On a bare machine (no .venv, fairseq not importable by PY; no network): the cp312 wheels that `make gpu-wheels`
# put in gpu_wheels/ on a machine with network are installed into a temporary folder on PYTHONPATH first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${PY:-}" ] || { PY=.venv/bin/python; [ -x "$PY" ] || PY=python3; }
UPDATES=${UPDATES:-300} OUT=${OUT:-gpu_check_out}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # fairseq_dpreg and scripts/ from this checkout
if ! "$PY" -c 'import fairseq' 2>/dev/null; then
  ls gpu_wheels/*.whl > /dev/null 2>&1 ||
    { echo "fairseq is not importable by $PY and gpu_wheels/ holds no wheels: run 'make gpu-wheels' on a machine" \
           "with network and bring gpu_wheels/ along (README: GPU check)" >&2; exit 2; }
  SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_site.XXXXXX")
  echo "fairseq missing: installing gpu_wheels/*.whl into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" gpu_wheels/*.whl
  export PYTHONPATH="$SITE:$PYTHONPATH"
  "$PY" -c 'import fairseq, hydra, omegaconf, bitarray; print("fairseq", fairseq.__version__)'
fi
mkdir -p "$OUT" && rm -f "$OUT/gpu_check.json" "$OUT/logs.tar.gz"
W=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'tar -czf "$OUT/logs.tar.gz" -C "$W" $(cd "$W" && ls ./*.log ./*.json 2>/dev/null); rm -rf "$W"' EXIT
if [ "$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')" = 1 ]; then
  DEV=() MODEL=(--encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 256 --decoder-embed-dim 256
                --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024 --max-tokens 8192)
else
  echo "no CUDA: reduced run"
  export DPREG_EMULATE_GPU=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  DEV=(--cpu) MODEL=(--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 64 --decoder-embed-dim 64
                     --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 --encoder-attention-heads 2
                     --decoder-attention-heads 2 --max-tokens 600)
fi
MODEL=(--arch transformer "${MODEL[@]}" --share-all-embeddings --activation-fn gelu --seed 1 --num-workers 0
       --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --disable-validation --log-format json)
PLAIN=(--task translation --optimizer adam) REG=(--task translation_dpreg --optimizer dpreg_adam --dpreg-lambda 0.1)
train() {  # NAME ARGS...: one fairseq-train (scripts/dist_worker.py) on $DATA, to $W/NAME.log and $W/NAME.json
  local name=$1; shift
  DPREG_COUNT_FILE="$W/$name.json" timeout -k 10 "${LIMIT:-1800}" "$PY" scripts/dist_worker.py "${DATA:-$W/bin}" \
    --user-dir fairseq_dpreg "${MODEL[@]}" "${DEV[@]}" "$@" > "$W/$name.log" 2>&1 ||
    { local rc=$?; echo "  ($name exited $rc: logs.tar.gz $name.log)"; tail -3 "$W/$name.log" | cut -c1-300; return $rc; }
}
check() { "$PY" scripts/gpu_check.py "$OUT" "$@" || true; }  # a crash is recorded as a FAIL row
preprocess() {
  "$PY" -m fairseq_cli.preprocess --source-lang src --target-lang tgt --trainpref "$1/train" --destdir "$1/bin" \
    --joined-dictionary --workers 2 > "$1/preprocess.log" 2>&1
}
"$PY" scripts/make_demo_corpus.py "$W" > /dev/null && preprocess "$W"

echo "== 1 regularized update against fp32 (core, no fairseq)"
check core
[ ${#DEV[@]} -gt 0 ] || check sweep  # the README's radius table, on the GPU (CPU autocast: README)

echo "== 2 loss scale with overflows injected at train_step calls 3, 7, 8"
# start at scale 4 (amp too: fairseq 0.12 takes amp's initial scale from --fp16-init-scale): no natural overflow
# (a batch and its halves overflow at different scales)
S2=(--lr 5e-4 --dropout 0.1 --max-update 10 --no-save --log-interval 1 --fp16-init-scale 4)
for mode in fp16 memory-efficient-fp16 amp; do
  case $mode in
    amp) flags=(--amp --amp-batch-retries 1 --amp-scale-window 4 --amp-init-scale 4) radius=();;
    *) flags=(--"$mode" --fp16-scale-window 4) radius=(--dpreg-radius 2.0);;
  esac
  DPREG_INJECT_OVERFLOW=3,7,8 train "$mode.plain" "${PLAIN[@]}" "${flags[@]}" "${S2[@]}" || true
  DPREG_INJECT_OVERFLOW=3,7,8 train "$mode.reg" "${REG[@]}" "${radius[@]}" "${flags[@]}" "${S2[@]}" || true
  check steps "$mode" "$W/$mode.plain" "$W/$mode.reg"
done

echo "== 3 training in amp against fp32 ($UPDATES updates)"
S3=("${REG[@]}" --lr 5e-4 --lr-scheduler inverse_sqrt --warmup-updates 100 --dropout 0.1 --max-update "$UPDATES"
    --no-save --log-interval 10 --dpreg-radius 0.01)
train fp32 "${S3[@]}" || true
train amp "${S3[@]}" --amp || true
check train "$UPDATES" "$W/fp32" "$W/amp"
rc=0; LIMIT=300 train fp16-default-radius "${REG[@]}" --fp16 --max-update 1 --no-save > /dev/null || rc=$?
check refused "$W/fp16-default-radius.log" "$rc"

echo "== 4 two ranks on one device at epoch ends (49 pairs, batch size 8)"
unset DPREG_EMULATE_GPU
mkdir -p "$W/odd" && for side in src tgt; do head -n 49 "$W/train.$side" > "$W/odd/train.$side"; done
preprocess "$W/odd"
S4=(--task translation_dpreg --optimizer dpreg_sgd --dpreg-lambda 0.1 --lr 0.05 --dropout 0 --batch-size 8
    --required-batch-size-multiple 1 --max-tokens 100000 --max-epoch 2 --log-interval 1 --no-epoch-checkpoints)
DATA="$W/odd/bin" train ep.single "${S4[@]}" --update-freq 2 --save-dir "$W/ep.single" || true
for ddp in c10d legacy_ddp; do
  port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start=$SECONDS pids=()
  for rank in 0 1; do
    DATA="$W/odd/bin" LIMIT=180 train "ep.$ddp.$rank" "${S4[@]}" --save-dir "$W/ep.$ddp" --ddp-backend "$ddp" \
      --distributed-world-size 2 --distributed-rank "$rank" --distributed-init-method "tcp://127.0.0.1:$port" \
      --distributed-no-spawn --distributed-backend gloo --device-id 0 &
    pids+=($!)
  done
  rc=0; for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  check epoch "$ddp" "$W/ep.$ddp/checkpoint_last.pt" "$W/ep.single/checkpoint_last.pt" "$rc" $((SECONDS - start))
done

"$PY" scripts/gpu_check.py "$OUT" summary
