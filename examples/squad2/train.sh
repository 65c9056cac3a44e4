#!/usr/bin/env bash
# Extractive QA (SQuAD 2.0 / MRQA) training: one recipe, one algorithm switch.
#
#   examples/squad2/train.sh RECIPE ALGO DATA_BIN SAVE_DIR [extra fairseq-train flags...]
#
# RECIPE  cpu-tiny      from-scratch 2-layer RoBERTa (d=64) for `prepare.sh --synthetic` data (spm);
#                       a smoke test: 600 updates, about 35 s on 2 quiet CPU cores (dotprod 55 s; README)
#         roberta-base  fine-tunes a fairseq roberta.base checkpoint on one GPU (amp):
#                       ROBERTA_PATH = the checkpoint folder (/path/roberta.base, holding model.pt) or the
#                       file (/path/roberta.base/model.pt); DATA_BIN from `prepare.sh --tokenizer gpt2`
#         roberta-large the same for roberta.large (ROBERTA_PATH=/path/roberta.large or .../model.pt)
#         minilm        fine-tunes a converted Hugging Face encoder on the CPU: ENCODER_DIR (default
#                       pretrained/all-MiniLM-L6-v2, written by `make minilm`) gives model.pt and the architecture
#                       flags (its conversion.json); DATA_BIN from `prepare.sh --tokenizer hf --hf-dir ENCODER_DIR`.
#                       EPOCHS (1) epoch of batches of 32 windows, lr 1e-4 decaying linearly after 6% warm-up
#         minilm-scratch the same architecture and schedule from a random initialisation
# ALGO    plain         --task extractive_qa --optimizer adam
#         dotprod|reptile|fomaml
#                       --task extractive_qa_dpreg --optimizer dpreg_adam --dpreg-algorithm ALGO
#                       --dpreg-lambda --dpreg-radius [--dpreg-alpha]
# Both use --user-dir fairseq_dpreg (the task and the criterion extractive_qa are the plugin's).
# Extra flags go to fairseq-train after the recipe's own, so they win (e.g. --max-update 100 --seed 2).
# Environment: DPREG_LAMBDA (0.1), DPREG_RADIUS (0.01), DPREG_ALPHA (0.1, reptile and fomaml),
# ROBERTA_PATH, ENCODER_DIR, LR (minilm*: 1e-4), EPOCHS (minilm*: 1), TOTAL_UPDATES / WARMUP_UPDATES (roberta-*: polynomial decay length and warm-up; the
# defaults fit SQuAD 2.0 train, ~132k windows, 2 epochs at 32 windows an update), PRECISION (roberta-*:
# amp (default; fp32 weights, fp16 compute), fp16 (the stock recipe's --fp16 ...: fp16 weights, too coarse
# for the regularizer's default radius, see README) or fp32), PYTHON / FAIRSEQ_TRAIN.
# DRY_RUN=1 prints the command instead of running it. The log goes to stdout and SAVE_DIR/train.log.
# A SAVE_DIR that already holds checkpoint_last.pt: cpu-tiny resumes from it (fairseq's behaviour), roberta-*
# start again from ROBERTA_PATH and overwrite it; either way a line on stderr says so before training.
# A resumed run that already reached --max-update is not trained again (a line on stderr, exit status 0).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit
TRAIN="$(fairseq_cmd fairseq-train FAIRSEQ_TRAIN)"

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
[ $# -ge 4 ] || usage 2
RECIPE="$1"; ALGO="$2"; DATA_BIN="$3"; SAVE_DIR="$4"; shift 4
[ -f "$DATA_BIN/dict.txt" ] && [ -f "$DATA_BIN/train.idx" ] || die "$DATA_BIN: no dict.txt/train.idx (run prepare.sh first)"
TOKENIZER="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokenizer"])' "$DATA_BIN/qa_prepare.json")"

COMMON=(
  "$DATA_BIN" --user-dir "$REPO/fairseq_dpreg" --save-dir "$SAVE_DIR"
  --criterion extractive_qa --no-epoch-checkpoints
  --best-checkpoint-metric loss
  --log-format json --log-file "$SAVE_DIR/train.log"
)

roberta_recipe() {  # arch lr batch
  [ "$TOKENIZER" = gpt2 ] || die "$RECIPE needs DATA_BIN made with prepare.sh --tokenizer gpt2 (RoBERTa's BPE)"
  [ -n "${ROBERTA_PATH:-}" ] || die "$RECIPE: set ROBERTA_PATH to a fairseq RoBERTa checkpoint (folder or model.pt)"
  local ckpt
  ckpt="$(checkpoint_file ROBERTA_PATH)"
  local total="${TOTAL_UPDATES:-8250}"
  local warmup="${WARMUP_UPDATES:-$(( total * 6 / 100 ))}"
  RECIPE_ARGS=(
    --restore-file "$ckpt" --reset-optimizer --reset-dataloader --reset-meters --reset-lr-scheduler
    --arch "$1" --max-positions 512
    --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01
    --adam-betas '(0.9, 0.98)' --adam-eps 1e-06 --clip-norm 0.0
    --lr "$2" --lr-scheduler polynomial_decay --total-num-update "$total" --max-update "$total"
    --warmup-updates "$warmup"
    --batch-size "$3" --required-batch-size-multiple 1 --max-tokens 16384 --find-unused-parameters
    --log-interval 100 --seed 1 --validate-interval-updates 2000 --save-interval-updates 2000
    --keep-interval-updates 1
  )
  precision_args --fp16 --fp16-init-scale 4 --threshold-loss-scale 1 --fp16-scale-window 128
  RECIPE_ARGS+=("${PRECISION_ARGS[@]}")
}

case "$RECIPE" in
  cpu-tiny)
    [ "$TOKENIZER" = sentencepiece ] || die "cpu-tiny trains from scratch: use DATA_BIN from prepare.sh (spm)"
    RECIPE_ARGS=(
      --arch roberta_base --encoder-layers 2 --encoder-embed-dim 64 --encoder-ffn-embed-dim 256
      --encoder-attention-heads 4 --max-positions 128
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01
      --adam-betas '(0.9, 0.98)' --adam-eps 1e-06 --clip-norm 1.0
      --lr 1e-3 --lr-scheduler inverse_sqrt --warmup-updates 50 --warmup-init-lr 1e-07
      --batch-size 32 --max-update 600 --max-epoch 100
      --num-workers 0 --cpu --log-interval 20 --seed 1
      --validate-interval 1000 --save-interval 1000
      --validate-interval-updates 200 --save-interval-updates 200 --keep-interval-updates 1
    )
    ;;
  minilm|minilm-scratch)
    [ "$TOKENIZER" = hf ] || die "$RECIPE needs DATA_BIN made with prepare.sh --tokenizer hf --hf-dir ENCODER_DIR"
    encoder_args "${ENCODER_DIR:-$REPO/pretrained/all-MiniLM-L6-v2}" "$DATA_BIN/dict.txt"
    WINDOWS="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["splits"]["train"]["windows"])' \
      "$DATA_BIN/qa_prepare.json")"
    TOTAL="${TOTAL_UPDATES:-$(( (WINDOWS + 31) / 32 * ${EPOCHS:-1} ))}"
    RECIPE_ARGS=(
      "${ENCODER_ARGS[@]}"
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01
      --adam-betas '(0.9, 0.98)' --adam-eps 1e-06 --clip-norm 1.0
      --lr "${LR:-1e-04}" --lr-scheduler polynomial_decay --total-num-update "$TOTAL" --max-update "$TOTAL"
      --warmup-updates "${WARMUP_UPDATES:-$(( TOTAL * 6 / 100 ))}"
      --batch-size 32 --required-batch-size-multiple 1 --max-epoch 100
      --num-workers 0 --cpu --log-interval 20 --seed 1
      --validate-interval 1000 --save-interval 1000
      --validate-interval-updates 100 --save-interval-updates 100 --keep-interval-updates 1
    )
    [ "$RECIPE" = minilm-scratch ] || RECIPE_ARGS+=(--restore-file "$ENCODER_MODEL" --reset-optimizer
                                                    --reset-dataloader --reset-meters --reset-lr-scheduler)
    ;;
  roberta-base) roberta_recipe roberta_base 3e-05 32 ;;
  roberta-large) roberta_recipe roberta_large 1.5e-05 48 ;;
  *) die "unknown RECIPE $RECIPE (cpu-tiny, minilm, minilm-scratch, roberta-base or roberta-large)" ;;
esac

algo_args extractive_qa "$ALGO"

CMD=("$TRAIN" "${COMMON[@]}" "${ALGO_ARGS[@]}" "${RECIPE_ARGS[@]}" "$@")
dry_run_exit "${CMD[@]}"
resume_check "$SAVE_DIR" "${CMD[@]}"
mkdir -p "$SAVE_DIR"
echo "== train: $RECIPE / $ALGO -> $SAVE_DIR =="
exec "${CMD[@]}"
