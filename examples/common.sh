# Shared by the example scripts (sourced, not run): the interpreter and fairseq commands, usage(), die(),
# and the one switch between plain fairseq training and the plugin's algorithms.
#
# Provides: REPO (the repository root), PY (PYTHON, else .venv/bin/python, else python3), BIN (PY's folder),
#   fairseq_cmd NAME VAR   prints $VAR if set, else NAME next to PY if there, else NAME (from PATH)
#   usage [STATUS]         prints the calling script's header comment and exits (status 2 by default)
#   die MESSAGE...         prints "SCRIPT: error: MESSAGE" to stderr and exits 1
#   algo_args TASK ALGO    sets ALGO_ARGS: plain -> --task TASK --optimizer adam; dotprod|reptile|fomaml ->
#                          --task TASK_dpreg --optimizer dpreg_adam --dpreg-algorithm ALGO --dpreg-lambda
#                          $DPREG_LAMBDA (0.1) --dpreg-radius $DPREG_RADIUS (0.01) [--dpreg-alpha $DPREG_ALPHA (0.1)]
#   precision_args FP16... sets PRECISION_ARGS from $PRECISION (GPU recipes; call it before algo_args): amp
#                          (default) -> --amp: fp32 weights, fp16 autocast, the regularizer perturbs fp32
#                          weights, and DPREG_RADIUS defaults to 0.1 (fp16 compute noise, divided by the radius,
#                          blurs the difference quotient at 0.01: README "Mixed precision"); fp16 -> the
#                          recipe's FP16 flags (fp16 weights: a regularized run stops at start-up unless
#                          --dpreg-radius is large enough for them); fp32 -> nothing
#   dry_run_exit CMD...    with DRY_RUN=1: prints CMD (shell-quoted) and exits 0; otherwise does nothing
#   checkpoint_file VAR    prints the checkpoint that $VAR names: a folder holding model.pt, or the file itself;
#                          dies naming VAR when there is none
#   encoder_args DIR DICT  sets ENCODER_ARGS (the architecture flags in DIR/conversion.json, written by
#                          scripts/convert_hf_encoder.py) and ENCODER_MODEL (DIR/model.pt); dies when DIR is not a
#                          converted folder or when DICT (the data's dict.txt) is not DIR/dict.txt
#   check_hf_dir OPTION DIR
#                          dies unless DIR (--hf-dir) is a converted folder holding tokenizer.json and dict.txt
#   resume_check SAVE_DIR CMD...
#                          one line on stderr when SAVE_DIR/checkpoint_last.pt exists: fairseq-train resumes
#                          from it, or (a --restore-file in CMD) starts again and overwrites it; exits 0 when
#                          the checkpoint it would resume from already reached CMD's --max-update (fairseq-train
#                          would take one more update before it checks, and overwrite the finished checkpoints)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
BIN="$(dirname "$PY")"

_caller() { echo "${BASH_SOURCE[${#BASH_SOURCE[@]}-1]}"; }

fairseq_cmd() {
  local cmd="${!2:-$BIN/$1}"
  [ -x "$cmd" ] || cmd="$1"
  echo "$cmd"
}

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$(_caller)"
  exit "${1:-2}"
}

die() { echo "$(basename "$(_caller)"): error: $*" >&2; exit 1; }

algo_args() {
  case "$2" in
    plain) ALGO_ARGS=(--task "$1" --optimizer adam) ;;
    dotprod|reptile|fomaml)
      ALGO_ARGS=(
        --task "$1_dpreg" --optimizer dpreg_adam --dpreg-algorithm "$2"
        --dpreg-lambda "${DPREG_LAMBDA:-0.1}" --dpreg-radius "${DPREG_RADIUS:-0.01}"
      )
      [ "$2" = dotprod ] || ALGO_ARGS+=(--dpreg-alpha "${DPREG_ALPHA:-0.1}")
      ;;
    *) die "unknown ALGO $2 (plain, dotprod, reptile or fomaml)" ;;
  esac
}

precision_args() {
  case "${PRECISION:-amp}" in
    amp) PRECISION_ARGS=(--amp); DPREG_RADIUS="${DPREG_RADIUS:-0.1}" ;;
    fp16) PRECISION_ARGS=("$@") ;;
    fp32) PRECISION_ARGS=() ;;
    *) die "PRECISION must be amp, fp16 or fp32 (got $PRECISION)" ;;
  esac
}

dry_run_exit() {
  [ "${DRY_RUN:-0}" = 1 ] || return 0
  printf '%q ' "$@"; echo
  exit 0
}

checkpoint_file() {
  local path="${!1}"
  [ ! -d "$path" ] || path="$path/model.pt"
  [ -f "$path" ] || die "$path: missing checkpoint ($1: a folder holding model.pt, or the model.pt file)"
  echo "$path"
}

check_hf_dir() {
  [ -n "$2" ] || die "$1 needs --hf-dir DIR (a converted folder with tokenizer.json and dict.txt)"
  [ -d "$2" ] || die "$2: no such folder (--hf-dir: the output of scripts/convert_hf_encoder.py)"
  local f
  for f in tokenizer.json dict.txt; do
    [ -f "$2/$f" ] || die "$2/$f: missing file (--hf-dir: the output of scripts/convert_hf_encoder.py)"
  done
}

encoder_args() {
  local dir="$1"
  [ -f "$dir/conversion.json" ] && [ -f "$dir/model.pt" ] || \
    die "$dir: not a converted encoder (no conversion.json / model.pt): run \`make minilm\`, or set ENCODER_DIR to a" \
        "folder written by scripts/convert_hf_encoder.py"
  cmp -s "$dir/dict.txt" "$2" || die "$2 is not $dir/dict.txt: prepare the data with this encoder's tokenizer (--hf-dir $dir)"
  mapfile -t ENCODER_ARGS < <("$PY" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["fairseq_args"]))' \
    "$dir/conversion.json")
  ENCODER_MODEL="$dir/model.pt"
}

_last_flag() {  # the value of CMD's last --NAME (NAME VALUE or NAME=VALUE), as fairseq-train's argparse takes it
  local name="$1" value="$2" prev="" arg
  shift 2
  for arg in "$@"; do
    case "$arg" in "$name"=*) value="${arg#"$name"=}" ;; esac
    [ "$prev" != "$name" ] || value="$arg"
    prev="$arg"
  done
  echo "$value"
}

resume_check() {
  local save="$1" restore max updates
  shift
  [ -f "$save/checkpoint_last.pt" ] || return 0
  restore="$(_last_flag --restore-file checkpoint_last.pt "$@")"
  if [ "$restore" != checkpoint_last.pt ]; then
    echo "$(basename "$(_caller)"): $save/checkpoint_last.pt exists, but this run starts again from $restore" \
      "(--restore-file) and overwrites the checkpoints in $save (use a new SAVE_DIR to keep them)" >&2
    return 0
  fi
  max="$(_last_flag --max-update 0 "$@")"
  # an unreadable checkpoint is left to fairseq-train, which says what is wrong with it
  if [ "$max" -gt 0 ] 2>/dev/null && updates="$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c \
      'import sys; from fairseq_dpreg.checkpoint_io import updates_done; print(updates_done(sys.argv[1]))' \
      "$save/checkpoint_last.pt" 2>/dev/null)" && [ "$updates" -ge "$max" ]; then
    echo "$(basename "$(_caller)"): $save/checkpoint_last.pt already reached --max-update $max ($updates updates):" \
      "nothing to train (raise --max-update to train on, or use a new SAVE_DIR to start over)" >&2
    exit 0
  fi
  echo "$(basename "$(_caller)"): resuming from $save/checkpoint_last.pt (fairseq's behaviour; use a new SAVE_DIR" \
    "or delete it to start over)" >&2
}
