#!/bin/bash
# Trains the checkpoints that benchmarks/crystal/csp.yaml compares, each for the budget of the
# CPU recipe (6,000 steps at batch 256, one thread), into runs/crystal/budget6k/<name>/checkpoints:
#   bash benchmarks/crystal/train_csp_runs.sh            # all four, one after another
#   bash benchmarks/crystal/train_csp_runs.sh fm         # one of: crysbfn_s0 crysbfn_s1 no_entropy fm
# crysbfn_s0 is the recipe `sciflow fit --config configs/crystal/perov5_cpu.yaml` itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
train() {  # NAME SEED CONFIG...
  local name=$1 seed=$2 dir=runs/crystal/budget6k/$1 args=()
  shift 2
  for config in "$@"; do args+=(--config "$config"); done
  local checkpoint='[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": "'$dir'/checkpoints", "save_last": true, "save_top_k": 1, "save_on_train_epoch_end": true}}]'
  sciflow fit "${args[@]}" --seed_everything "$seed" --trainer.max_steps 6000 \
    --trainer.default_root_dir "$dir" --trainer.callbacks "$checkpoint"
}
run() {
  case $1 in
    crysbfn_s0) train crysbfn_s0 0 configs/crystal/perov5_cpu.yaml ;;
    crysbfn_s1) train crysbfn_s1 1 configs/crystal/perov5_cpu.yaml ;;
    no_entropy) train no_entropy 0 configs/crystal/perov5_cpu.yaml configs/crystal/perov5_cpu_no_entropy.yaml ;;
    fm) train fm 0 configs/crystal/fm_csp_perov5_cpu.yaml ;;
    *) echo "unknown run $1; expected crysbfn_s0 crysbfn_s1 no_entropy fm" >&2; exit 2 ;;
  esac
}
for name in "${@:-crysbfn_s0 crysbfn_s1 no_entropy fm}"; do
  for one in $name; do run "$one"; done
done
