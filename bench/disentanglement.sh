#!/usr/bin/env bash
# The disentanglement table of docs/disentanglement.md in one command: the six models of
# disentanglement_lib's study (experiments/dsprites_*.py) x SEEDS, each model's seeds trained as
# one vectorised group (aejax.sweep --vectorize, which keeps the data on the devices; each group
# records its wall time in wall_times.txt), every run analysed with --disentanglement at its own seed, the reference codes
# (the factors and noise as the code) scored at the same seeds, then one aejax.compare table of
# the scores, mean ± std over the seeds, the references as its first rows: WORKDIR/table.md.
#
#   python -m aejax.prepare_shapes --data_dir=/data/tfds --grid=small
#   bench/disentanglement.sh /tmp/dsprites --data_dir=/data/tfds
#
# The flags after WORKDIR are the data flags every command takes (--data_dir, --manual_dir,
# --nodownload). Settings (environment):
#   EPOCHS   the training budget: epochs of DATASET per run (default 1 of the small grid, 720
#            steps of 64; the study trains 300,000); wall_times.txt records each group's time
#   ANNEAL_STEPS  the annealed VAE's capacity_steps (default 240: C reaches c_max after a third
#            of the default budget, as the study's 100,000 of 300,000)
#   DATASET  a prepared dataset with factors (default shapes2d_small; shapes2d is the full grid)
#   SEEDS    default 0,1,2
#   SCALE    --disentanglement_scale of every metric (default 1: the reference's sample sizes)
#   TRAIN_FLAGS    more aejax.sweep flags, e.g. --config.model.channels=(4,4,8,8) (no spaces);
#            default --config.group_runs=unroll --config.model.conv_impl=space_to_depth: the
#            same convolutions (a checkpoint restores under either conv_impl), computed the way
#            the 2-core CPU runs fastest (docs/sweeps.md: aejax.bench's group rows)
#   ANALYZE_FLAGS  analyze's other flags (default: 5000 of the grid's images as the test split and
#            as the train images of the codes, the NLL of the first 1000 of them with k = 10)
# All groups train first, then every run is analysed. Re-running it skips the groups that
# wall_times.txt records as trained and the runs already analysed (aejax.sweep resumes an
# unfinished group).
set -euo pipefail
root=${1:?usage: bench/disentanglement.sh WORKDIR [--data_dir=... --manual_dir=...]}
shift
PY=${PY:-python}
EPOCHS=${EPOCHS:-1}
ANNEAL_STEPS=${ANNEAL_STEPS:-240}
DATASET=${DATASET:-shapes2d_small}
SEEDS=${SEEDS:-0,1,2}
SCALE=${SCALE:-1}
read -ra train_flags <<< "${TRAIN_FLAGS:---config.group_runs=unroll --config.model.conv_impl=space_to_depth}"
read -ra analyze_flags <<< "${ANALYZE_FLAGS:---k=10 --nll_images=1000 --test_images=5000 --probe_examples=5000}"
mkdir -p "$root"
touch "$root/wall_times.txt"
for experiment in experiments/dsprites_*.py; do
  model=$(basename "$experiment" .py)
  grep -qs "^$model: " "$root/wall_times.txt" && continue  # trained by an earlier call
  extra=()
  [[ $model == dsprites_annealed_vae ]] && extra=(--config.objective.capacity_steps="$ANNEAL_STEPS")
  start=$(date +%s)
  "$PY" -m aejax.sweep --config="$experiment" --workdir="$root/$model" --vectorize \
      --sweep="seed=$SEEDS" --config.dataset="$DATASET" --config.num_epochs="$EPOCHS" \
      --config.input_mode=device "${extra[@]}" "${train_flags[@]}" "$@" > "$root/$model.log" 2>&1 \
      || { echo "$model failed: see $root/$model.log" >&2; exit 1; }
  echo "$model: $(( $(date +%s) - start )) s wall" | tee -a "$root/wall_times.txt"
done
for run in "$root"/dsprites_*/dsprites_*-seed=*; do
  grep -qs '"mig"' "$run/analysis/metrics.json" && continue
  start=$(date +%s)
  "$PY" -m aejax.analyze --workdir="$run" --seed="${run##*-seed=}" --disentanglement \
      --disentanglement_scale="$SCALE" "${analyze_flags[@]}" "$@" > "$run/analyze.log" 2>&1 \
      || { echo "analysis of $run failed: see $run/analyze.log" >&2; exit 1; }
  echo "analyze ${run#"$root"/}: $(( $(date +%s) - start )) s wall" | tee -a "$root/wall_times.txt"
done
"$PY" -m aejax.disentanglement_reference --dataset="$DATASET" --seeds="$SEEDS" \
    --disentanglement_scale="$SCALE" --out="$root/reference.json" "$@"
scores=beta_vae_accuracy,factor_vae_accuracy,mig,dci_disentanglement,dci_completeness
scores+=,dci_informativeness,sap,modularity,explicitness
"$PY" -m aejax.compare "$root" --reference="$root/reference.json" --out="$root/compare" \
    --metric="analysis.metrics.${scores//,/,analysis.metrics.}" | tee "$root/table.md"
