#!/bin/bash
# Trains the checkpoints the medical benchmarks compare beyond the configs' own runs, one thread
# each, with SCIFLOW_DATA_DIR set (see synthprog.yaml and ms_pairs.yaml):
#   bash benchmarks/medical/train_runs.sh                       # everything below, in order
#   bash benchmarks/medical/train_runs.sh ifn_s1 lopo_patient03 # some of them
# ifn_s<k>: training seed k of configs/medical/imageflownet_synthprog.yaml (seed 0 is the config's
#   own run), in runs/medical/imageflownet_synthprog_s<k>; the default list trains seeds 1 and 2;
# unet_s<k>: likewise for the time-conditioned UNet baseline (configs/medical/unet_synthprog.yaml),
#   in runs/medical/unet_synthprog_s<k>;
# coarse_s<k>: ImageFlowNet's earlier recipe, training seed k (0 too): only the three coarse maps
#   flow, RK4 x 2, 850 steps; in runs/medical/imageflownet_coarse_synthprog_s<k>;
# lopo_patient03, lopo_patient12, lopo_patient19: the leave-one-patient-out folds of
#   configs/medical/imageflownet_ms_pairs.yaml (patient01 is the config's own fold), in
#   runs/medical/imageflownet_ms_pairs_lopo_<patient>.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
train() {  # DIR CONFIG ARGS...
  local dir=$1 config=$2
  shift 2
  local checkpoint='[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": "'$dir'/checkpoints", "save_last": true, "save_top_k": 1, "save_on_train_epoch_end": true}}]'
  sciflow fit --config "$config" --trainer.default_root_dir "$dir" --trainer.callbacks "$checkpoint" "$@"
}
lopo() {  # TEST_PATIENT VAL_PATIENT
  train "runs/medical/imageflownet_ms_pairs_lopo_$1" configs/medical/imageflownet_ms_pairs.yaml \
    --data.init_args.test_patients "[$1]" --data.init_args.val_patients "[$2]"
}
run() {
  case $1 in
    ifn_s[1-9]*) train "runs/medical/imageflownet_synthprog_s${1#ifn_s}" configs/medical/imageflownet_synthprog.yaml \
      --seed_everything "${1#ifn_s}" ;;
    coarse_s[0-9]*) train "runs/medical/imageflownet_coarse_synthprog_s${1#coarse_s}" \
      configs/medical/imageflownet_synthprog.yaml --seed_everything "${1#coarse_s}" \
      --trainer.max_steps 850 --model.init_args.network.init_args.flow_scales "[1, 2, 3]" \
      --model.init_args.network.init_args.num_steps 2 ;;
    unet_s[1-9]*) train "runs/medical/unet_synthprog_s${1#unet_s}" configs/medical/unet_synthprog.yaml \
      --seed_everything "${1#unet_s}" ;;
    lopo_patient03) lopo patient03 patient12 ;;
    lopo_patient12) lopo patient12 patient19 ;;
    lopo_patient19) lopo patient19 patient01 ;;
    *) echo "unknown run $1; expected ifn_s<k> unet_s<k> coarse_s<k> lopo_patient03 lopo_patient12 lopo_patient19" >&2; exit 2 ;;
  esac
}
for name in "${@:-ifn_s1 ifn_s2 unet_s1 unet_s2 lopo_patient03 lopo_patient12 lopo_patient19}"; do
  for one in $name; do run "$one"; done
done
