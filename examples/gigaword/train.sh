#!/usr/bin/env bash
# Gigaword training: one recipe, one algorithm switch.
#
#   examples/gigaword/train.sh RECIPE ALGO DATA_BIN SAVE_DIR [extra fairseq-train flags...]
#
# RECIPE  cpu-small        3+3-layer pointer-generator transformer, d=256, 1000 updates of ~80 pairs:
#                          about 15 min on 2 quiet CPU cores (12.5k pairs)
#         minilm-warm      BERT2RND on the CPU: the converted encoder of ENCODER_DIR (default
#                          pretrained/all-MiniLM-L6-v2, from `make minilm`) + a new 3-layer decoder (--arch
#                          transformer_warm); DATA_BIN must come from `prepare.sh ... --bpe hf --hf-dir ENCODER_DIR`.
#                          A resumed run drops --encoder-init: every weight comes from checkpoint_last.pt
#         transformer-base transformer_wmt_en_de on one or more GPUs (amp)
#         bart-large       fine-tunes a fairseq bart.large checkpoint: BART_PATH = the checkpoint folder
#                          (/path/bart.large, holding model.pt) or the file (/path/bart.large/model.pt);
#                          DATA_BIN must come from `prepare.sh ... --bpe gpt2` (GPT-2 BPE + BART's dict.txt)
# ALGO    plain            --task translation --optimizer adam
#         dotprod|reptile|fomaml
#                          --task translation_dpreg --optimizer dpreg_adam
#                          --dpreg-algorithm ALGO --dpreg-lambda --dpreg-radius [--dpreg-alpha]
# Extra flags go to fairseq-train after the recipe's own, so they win (e.g. --max-update 100 --seed 2
# --dpreg-lambda 0.5). Environment: DPREG_LAMBDA (0.1), DPREG_RADIUS (0.01), DPREG_ALPHA (reptile and
# fomaml: 0.01 for cpu-small and minilm-warm, 0.1 otherwise), BART_PATH (bart-large), ENCODER_DIR (minilm-warm),
# PRECISION (GPU recipes: amp (default; fp32 weights, fp16 compute), fp16 (fp16 weights: too coarse for the
# regularizer's default radius, see the README) or fp32), PYTHON / FAIRSEQ_TRAIN (which interpreter / fairseq-train).
# Every run gets --user-dir fairseq_dpreg (it also registers fairseq's transformer_pointer_generator).
# DRY_RUN=1 prints the command instead of running it. The log (stdout and stderr) also goes to SAVE_DIR/train.log.
# A SAVE_DIR that already holds checkpoint_last.pt: cpu-small, minilm-warm and transformer-base resume from it
# (fairseq's behaviour), bart-large starts again from BART_PATH and overwrites it; either way a line on stderr says so.
# A resumed run that already reached --max-update is not trained again (a line on stderr, exit status 0).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../common.sh"  # REPO, PY, BIN, fairseq_cmd, usage, die, algo_args, dry_run_exit
TRAIN="$(fairseq_cmd fairseq-train FAIRSEQ_TRAIN)"

[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
[ $# -ge 4 ] || usage 2
RECIPE="$1"; ALGO="$2"; DATA_BIN="$3"; SAVE_DIR="$4"; shift 4
[ -f "$DATA_BIN/dict.src.txt" ] || die "$DATA_BIN/dict.src.txt: missing (run prepare.sh first)"

COMMON=(
  "$DATA_BIN" --user-dir "$REPO/fairseq_dpreg" --save-dir "$SAVE_DIR" --source-lang src --target-lang tgt
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1
  --truncate-source --no-epoch-checkpoints
  --log-format json
)

# the CPU recipes' batches, length and checkpoint/validation schedule (1000 updates, valid every 500)
CPU_SCHEDULE=(
  --max-tokens 2048 --max-update 1000
  --num-workers 0 --log-interval 10 --seed 1
  --validate-interval 1000 --save-interval 1000
  --validate-interval-updates 500 --save-interval-updates 500 --keep-interval-updates 1
)

case "$RECIPE" in
  cpu-small)
    # A pointer-generator transformer (fairseq's transformer_pointer_generator: the output mixes the vocabulary
    # distribution with a copy distribution over the source pieces, so copying is learnt from the start),
    # shared embeddings over the joined subword dictionary. ~2048-token batches (~80 pairs); 1000 updates
    # (~6.3 epochs of the 12.5k-pair sample) take about 15 min on 2 quiet cores (0.9 s/update; see README).
    # Inner step for reptile/fomaml 0.01: with 0.1 both climbed from the start on this model (loss 9.6 ->
    # 11-12 over the first 30 updates, cos(g1, g2) -0.6 to -0.8; see README).
    : "${DPREG_ALPHA:=0.01}"
    RECIPE_ARGS=(
      --arch transformer_pointer_generator --share-all-embeddings
      --source-position-markers 0 --alignment-layer -1 --alignment-heads 4
      --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 256 --decoder-embed-dim 256
      --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024
      --encoder-attention-heads 4 --decoder-attention-heads 4
      --max-source-positions 256 --max-target-positions 256
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.0001
      --adam-betas '(0.9, 0.98)' --clip-norm 0.0
      --lr 1e-3 --lr-scheduler inverse_sqrt --warmup-updates 200 --warmup-init-lr 1e-07
      "${CPU_SCHEDULE[@]}"
    )
    ;;
  minilm-warm)
    # BERT2RND (Rothe et al. 2020): pretrained encoder, new decoder, one vocabulary; settings chosen on the
    # 1,000 valid pairs (examples/gigaword/README.md, "minilm-warm").
    : "${DPREG_ALPHA:=0.01}"
    ENC="${ENCODER_DIR:-$REPO/pretrained/all-MiniLM-L6-v2}"
    if [ -f "$SAVE_DIR/checkpoint_last.pt" ]; then
      # a resumed run takes every weight from checkpoint_last.pt: only the flags of conversion.json are read
      [ -f "$ENC/conversion.json" ] || die "$ENC/conversion.json: missing (ENCODER_DIR: the converted folder the run" \
        "started from; its architecture flags are needed to resume)"
      cmp -s "$ENC/dict.txt" "$DATA_BIN/dict.src.txt" || die "$DATA_BIN/dict.src.txt is not $ENC/dict.txt"
      mapfile -t ENCODER_ARGS < <("$PY" -c \
        'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["fairseq_args"]))' "$ENC/conversion.json")
      INIT=()
    else
      encoder_args "$ENC" "$DATA_BIN/dict.src.txt"  # dies unless ENC is a converted folder with the data's dict.txt
      INIT=(--encoder-init "$ENC")
    fi
    RECIPE_ARGS=(--arch transformer_warm "${INIT[@]}")
    for ((i = 0; i < ${#ENCODER_ARGS[@]}; i += 2)); do
      case "${ENCODER_ARGS[i]}" in
        --arch) ;;
        --max-positions) RECIPE_ARGS+=(--max-source-positions "${ENCODER_ARGS[i + 1]}") ;;
        *) RECIPE_ARGS+=("${ENCODER_ARGS[i]}" "${ENCODER_ARGS[i + 1]}") ;;
      esac
    done
    RECIPE_ARGS+=(
      --decoder-layers 3 --decoder-embed-dim 384 --decoder-ffn-embed-dim 1536 --decoder-attention-heads 6
      --max-target-positions 256
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01
      --adam-betas '(0.9, 0.98)' --clip-norm 1.0
      --lr 5e-4 --lr-scheduler inverse_sqrt --warmup-updates 200 --warmup-init-lr 1e-07
      "${CPU_SCHEDULE[@]}"
    )
    ;;
  transformer-base)
    RECIPE_ARGS=(
      --arch transformer_wmt_en_de --share-all-embeddings
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.0001
      --adam-betas '(0.9, 0.98)' --clip-norm 0.0
      --lr 5e-4 --lr-scheduler inverse_sqrt --warmup-updates 4000 --warmup-init-lr 1e-07
      --max-tokens 8192 --update-freq 1 --max-update 100000
      --log-interval 100 --seed 1 --keep-last-epochs 1
      --save-interval-updates 5000 --keep-interval-updates 1
    )
    ;;
  bart-large)
    [ -n "${BART_PATH:-}" ] || die "bart-large: set BART_PATH to a fairseq bart.large checkpoint (folder or model.pt)"
    CKPT="$(checkpoint_file BART_PATH)"
    RECIPE_ARGS=(
      --restore-file "$CKPT" --reset-optimizer --reset-dataloader --reset-meters
      --arch bart_large --layernorm-embedding
      --share-all-embeddings --share-decoder-input-output-embed
      --required-batch-size-multiple 1
      --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01
      --adam-betas '(0.9, 0.999)' --adam-eps 1e-08 --clip-norm 0.1
      --lr 3e-05 --lr-scheduler polynomial_decay --total-num-update 20000 --max-update 20000
      --warmup-updates 500
      --max-tokens 2048 --update-freq 4
      --find-unused-parameters --log-interval 100 --seed 1
      --save-interval-updates 2000 --keep-interval-updates 1 --keep-last-epochs 1
    )
    ;;
  *) die "unknown RECIPE $RECIPE (cpu-small, minilm-warm, transformer-base or bart-large)" ;;
esac

case "$RECIPE" in
  transformer-base|bart-large) precision_args --fp16; RECIPE_ARGS+=("${PRECISION_ARGS[@]}") ;;
esac
algo_args translation "$ALGO"

CMD=("$TRAIN" "${COMMON[@]}" "${ALGO_ARGS[@]}" "${RECIPE_ARGS[@]}" "$@")
dry_run_exit "${CMD[@]}"
resume_check "$SAVE_DIR" "${CMD[@]}"
mkdir -p "$SAVE_DIR"
echo "== train: $RECIPE / $ALGO -> $SAVE_DIR ==" | tee -a "$SAVE_DIR/train.log"
# fairseq's own --log-file writes each line once per epoch seen so far; tee writes it once.
set +e
"${CMD[@]}" 2>&1 | tee -a "$SAVE_DIR/train.log"
status=${PIPESTATUS[0]}
exit "$status"
