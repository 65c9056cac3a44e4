#!/usr/bin/env bash
# SuperGLUE fine-tuning: one recipe, one algorithm switch, for every task prepared by prepare.sh.
#
#   examples/superglue/train.sh RECIPE ALGO DATA_BIN SAVE_DIR [extra fairseq-train flags...]
#
# RECIPE  roberta-base   fine-tunes a fairseq RoBERTa base checkpoint on one GPU (amp); DATA_BIN from
#                        `prepare.sh --bpe gpt2`; ROBERTA_PATH = the checkpoint folder (/path/roberta.base,
#                        holding model.pt) or the file (/path/roberta.base/model.pt)
#         roberta-large  the same with --arch roberta_large (ROBERTA_PATH = a roberta.large folder or model.pt)
#         cpu-tiny       from scratch on the CPU: a 2-layer RoBERTa (d=64, ffn 128, 2 heads); DATA_BIN from
#                        `prepare.sh --bpe spm`. A smoke test of the pipeline, not a benchmark.
#         minilm         fine-tunes a converted Hugging Face encoder on the CPU: ENCODER_DIR (default
#                        pretrained/all-MiniLM-L6-v2, written by `make minilm`; any scripts/convert_hf_encoder.py
#                        output) gives model.pt and the architecture flags (its conversion.json); DATA_BIN from
#                        `prepare.sh --bpe hf --hf-dir ENCODER_DIR`. 5 epochs, lr 1e-4, batches of 16
#         minilm-scratch the same architecture and schedule from a random initialisation (the comparison that
#                        shows what the pretrained weights bring). PAIR_ENCODING=siamese (minilm*) encodes
#                        the two sentences of a pair separately and classifies [u, v, |u-v|, u*v] of their
#                        mean-pooled, normalised embeddings (--sentence-pair-encoding; how sentence-embedding
#                        checkpoints such as all-MiniLM-L6-v2 are fine-tuned); siamese-cosine: the head reads
#                        cos(u, v) alone; joint (default): one sequence
# ALGO    plain          --task sentence_prediction (sentence_ranking for COPA) --optimizer adam
#         dotprod|reptile|fomaml
#                        --task sentence_prediction_dpreg (sentence_ranking_dpreg) --optimizer dpreg_adam
#                        --dpreg-algorithm ALGO --dpreg-lambda --dpreg-radius [--dpreg-alpha]
# The fairseq task, criterion and --num-classes come from DATA_BIN/superglue.json (written by prepare.sh).
# Extra flags go to fairseq-train after the recipe's own, so they win (e.g. --max-update 100 --seed 2).
# Environment: DPREG_LAMBDA (0.1), DPREG_RADIUS (0.01), DPREG_ALPHA (0.1; reptile, fomaml), ROBERTA_PATH,
#   ENCODER_DIR and PAIR_ENCODING (minilm*), LR (1e-5 roberta-*, 3e-4 cpu-tiny, 1e-4 minilm*), BATCH_SIZE (16), EPOCHS (10;
#   5 for minilm*), TOTAL_UPDATES (default: an extra
#   --max-update N, else the updates of EPOCHS epochs of the training split at BATCH_SIZE and --update-freq;
#   the learning-rate schedule decays over it), WARMUP_UPDATES (6% of TOTAL_UPDATES),
#   PRECISION (roberta-*: amp (default; fp32 weights, fp16 compute), fp16 (the stock GLUE recipe's
#   --fp16 ...; fp16 weights: too coarse for the regularizer's perturbation, see README) or fp32), PYTHON.
# DRY_RUN=1 prints the command instead of running it. The log goes to stdout and SAVE_DIR/train.log.
# A SAVE_DIR that already holds checkpoint_last.pt: cpu-tiny resumes from it (fairseq's behaviour), roberta-*
# start again from ROBERTA_PATH and overwrite it; either way a line on stderr says so before training.
# A resumed run that already reached --max-update is not trained again (a line on stderr, exit status 0).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
[ $# -ge 4 ] || usage 2
RECIPE="$1"; ALGO="$2"; DATA_BIN="$3"; SAVE_DIR="$4"; shift 4
DESC="$DATA_BIN/superglue.json"
[ -f "$DESC" ] || die "$DESC: missing (run examples/superglue/prepare.sh first)"
[ -f "$DATA_BIN/input0/train.idx" ] || die "$DATA_BIN/input0/train.idx: missing (prepare.sh with the train split)"

# task, fairseq task, classes, BPE and training-set size, from prepare.sh's description
read -r TASK FS_TASK NUM_CLASSES BPE N_TRAIN < <("$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["task"], d["fairseq_task"], d["num_classes"], d["bpe"], d["splits"].get("train", {}).get("examples", 0))
' "$DESC")

BATCH="${BATCH_SIZE:-16}"
case "$RECIPE" in minilm|minilm-scratch) EPOCHS="${EPOCHS:-5}" ;; *) EPOCHS="${EPOCHS:-10}" ;; esac
UPDATE_FREQ=1  # an extra --update-freq K makes an update of K batches: K times fewer updates
MAX_UPDATE=""  # an extra --max-update N shortens the run: the learning-rate schedule then spans N updates
ARGS=("$@")
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  case "${ARGS[i]}" in
    --update-freq) UPDATE_FREQ="${ARGS[i + 1]:-1}" ;;
    --update-freq=*) UPDATE_FREQ="${ARGS[i]#--update-freq=}" ;;
    --max-update) MAX_UPDATE="${ARGS[i + 1]:-}" ;;
    --max-update=*) MAX_UPDATE="${ARGS[i]#--max-update=}" ;;
  esac
done
[[ "$UPDATE_FREQ" =~ ^[0-9]+$ ]] && [ "$UPDATE_FREQ" -ge 1 ] || die "--update-freq $UPDATE_FREQ: give one whole number"
BATCHES=$(( (N_TRAIN + BATCH - 1) / BATCH ))
[ -z "$MAX_UPDATE" ] || [[ "$MAX_UPDATE" =~ ^[0-9]+$ ]] || die "--max-update $MAX_UPDATE: give one whole number"
TOTAL="${TOTAL_UPDATES:-${MAX_UPDATE:-$(( (BATCHES + UPDATE_FREQ - 1) / UPDATE_FREQ * EPOCHS ))}}"
[ "$TOTAL" -ge 1 ] || die "no training examples in $DESC"
WARMUP="${WARMUP_UPDATES:-$(( TOTAL * 6 / 100 ))}"

# the inputs of one example: <s> input0 </s> </s> input1 </s> (sentence_prediction) or, per choice k,
# <s> input_k </s> </s> input0 </s> (sentence_ranking, COPA; scored by one head with one output)
COMMON=(
  "$DATA_BIN" --user-dir "$REPO/fairseq_dpreg" --save-dir "$SAVE_DIR"
  --criterion "$FS_TASK" --num-classes "$NUM_CLASSES" --init-token 0 --separator-token 2
  --batch-size "$BATCH" --required-batch-size-multiple 1 --max-epoch "$EPOCHS"
  --lr-scheduler polynomial_decay --total-num-update "$TOTAL" --max-update "$TOTAL" --warmup-updates "$WARMUP"
  --adam-betas '(0.9, 0.98)' --adam-eps 1e-06
  --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric --no-epoch-checkpoints
  --log-format json --log-file "$SAVE_DIR/train.log"
)

case "$RECIPE" in
  roberta-base|roberta-large)
    [ "$BPE" = gpt2 ] || die "$RECIPE needs DATA_BIN from prepare.sh --bpe gpt2 (RoBERTa's BPE and dictionary)"
    [ -n "${ROBERTA_PATH:-}" ] || die "$RECIPE: set ROBERTA_PATH to a fairseq RoBERTa checkpoint folder (model.pt)"
    CKPT="$(checkpoint_file ROBERTA_PATH)"
    RECIPE_ARGS=(
      --restore-file "$CKPT" --reset-optimizer --reset-dataloader --reset-meters
      --arch "${RECIPE/-/_}" --max-positions 512
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.1 --clip-norm 0.0
      --lr "${LR:-1e-05}"
      --find-unused-parameters --log-interval 20 --seed 1
    )
    precision_args --fp16 --fp16-init-scale 4 --threshold-loss-scale 1 --fp16-scale-window 128
    RECIPE_ARGS+=("${PRECISION_ARGS[@]}")
    ;;
  cpu-tiny)
    [ "$BPE" = spm ] || die "cpu-tiny trains from scratch: use DATA_BIN from prepare.sh --bpe spm"
    RECIPE_ARGS=(
      --arch roberta_base --encoder-layers 2 --encoder-embed-dim 64 --encoder-ffn-embed-dim 128
      --encoder-attention-heads 2 --max-positions 512
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01 --clip-norm 1.0
      --lr "${LR:-3e-04}" --cpu --num-workers 0 --log-interval 10 --seed 1
    )
    ;;
  minilm|minilm-scratch)
    [ "$BPE" = hf ] || die "$RECIPE needs DATA_BIN from prepare.sh --bpe hf --hf-dir ENCODER_DIR (the encoder's tokenizer)"
    encoder_args "${ENCODER_DIR:-$REPO/pretrained/all-MiniLM-L6-v2}" "$DATA_BIN/input0/dict.txt"
    RECIPE_ARGS=(
      "${ENCODER_ARGS[@]}"
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01 --clip-norm 1.0
      --lr "${LR:-1e-04}" --cpu --num-workers 0 --log-interval 20 --seed 1
      --sentence-pair-encoding "${PAIR_ENCODING:-joint}"
    )
    [ "$RECIPE" = minilm-scratch ] || RECIPE_ARGS+=(--restore-file "$ENCODER_MODEL" --reset-optimizer
                                                    --reset-dataloader --reset-meters --reset-lr-scheduler)
    ;;
  *) die "unknown RECIPE $RECIPE (roberta-base, roberta-large, cpu-tiny, minilm or minilm-scratch)" ;;
esac

algo_args "$FS_TASK" "$ALGO"

CMD=("$PY" -m fairseq_cli.train "${COMMON[@]}" "${ALGO_ARGS[@]}" "${RECIPE_ARGS[@]}" "$@")
dry_run_exit "${CMD[@]}"
resume_check "$SAVE_DIR" "${CMD[@]}"
mkdir -p "$SAVE_DIR"
echo "== train: $TASK, $RECIPE / $ALGO ($FS_TASK, $NUM_CLASSES classes, $TOTAL updates) -> $SAVE_DIR =="
exec "${CMD[@]}"
