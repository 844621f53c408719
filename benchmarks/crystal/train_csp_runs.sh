#!/bin/bash
# Trains the checkpoints that benchmarks/crystal/csp.yaml compares, each with the CPU recipe of
# configs/crystal/perov5_cpu.yaml (6,000 steps at batch 128, constant learning rate, one thread),
# into runs/crystal/csp/<name>/checkpoints:
#   bash benchmarks/crystal/train_csp_runs.sh            # all of them, one after another
#   bash benchmarks/crystal/train_csp_runs.sh fm n50     # some of them (names below)
# names: crysbfn_s0 crysbfn_s1 no_entropy fm n50 n100 steps12k steps24k_s0 steps24k_s1, and
# carbon24_s1, the second seed of configs/crystal/carbon24_cpu.yaml (seed 0 is that config's own run),
# and weights_uniform / weights_floored: the recipe with the coordinate flow's step_weights changed
# (sciflow.bfn.vonmises.VonMisesBFN), which gives the early sampling steps a training signal.
# crysbfn_s0 is the recipe `sciflow fit --config configs/crystal/perov5_cpu.yaml` itself; n50 and
# n100 train CrysBFN with n = 50 / 100 steps (its accuracy schedule is tied to n, so sampling with
# more steps needs a model trained with them); steps12k is the recipe trained twice as long
# (12,000 steps, about 24 CPU-minutes), a point of its learning curve; steps24k_s<seed> trains it
# four times as long (24,000 steps, about 48 CPU-minutes: the issue's budget is 60 min on 2 cores),
# and steps24k_cosine_s<seed> the same with the learning rate decayed to 0 along a cosine.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
train() {  # NAME SEED CONFIG... [-- MORE SCIFLOW FIT ARGUMENTS]
  local name=$1 seed=$2 dir=runs/crystal/csp/$1 args=()
  shift 2
  while (($#)) && [[ $1 != -- ]]; do args+=(--config "$1"); shift; done
  (($#)) && shift && args+=("$@")
  local checkpoint='[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": "'$dir'/checkpoints", "save_last": true, "save_top_k": 1, "save_on_train_epoch_end": true}}]'
  sciflow fit "${args[@]}" --seed_everything "$seed" \
    --trainer.default_root_dir "$dir" --trainer.callbacks "$checkpoint"
}
run() {
  case $1 in
    crysbfn_s0) train crysbfn_s0 0 configs/crystal/perov5_cpu.yaml ;;
    crysbfn_s1) train crysbfn_s1 1 configs/crystal/perov5_cpu.yaml ;;
    no_entropy) train no_entropy 0 configs/crystal/perov5_cpu.yaml configs/crystal/perov5_cpu_no_entropy.yaml ;;
    fm) train fm 0 configs/crystal/fm_csp_perov5_cpu.yaml ;;
    n50 | n100) train "$1" 0 configs/crystal/perov5_cpu.yaml \
      -- --model.init_args.engine.init_args.num_steps "${1#n}" ;;
    steps12k) train steps12k 0 configs/crystal/perov5_cpu.yaml -- --trainer.max_steps 12000 ;;
    carbon24_s1) train carbon24_s1 1 configs/crystal/carbon24_cpu.yaml ;;
    weights_uniform | weights_floored) train "$1" 0 configs/crystal/perov5_cpu.yaml \
      -- --model.init_args.engine.init_args.components.frac.init_args.step_weights "${1#weights_}" ;;
    steps24k_s[0-9]) train "$1" "${1#steps24k_s}" configs/crystal/perov5_cpu.yaml -- --trainer.max_steps 24000 ;;
    steps24k_cosine_s[0-9]) train "$1" "${1#steps24k_cosine_s}" configs/crystal/perov5_cpu.yaml \
      -- --trainer.max_steps 24000 --model.init_args.lr_schedule cosine ;;
    *) echo "unknown run $1; expected crysbfn_s0 crysbfn_s1 no_entropy fm n50 n100 steps12k steps24k_s<seed> steps24k_cosine_s<seed> carbon24_s1 weights_uniform weights_floored" >&2; exit 2 ;;
  esac
}
for name in "${@:-crysbfn_s0 crysbfn_s1 no_entropy fm n50 n100 steps12k}"; do
  for one in $name; do run "$one"; done
done
