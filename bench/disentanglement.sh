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
#            steps of 64; the study trains 300,000). A train step of one run is 9.7 GFLOP (XLA's
#            cost analysis of the conv pair's gradient at batch 64), so the 18 runs with their
#            per-epoch evaluations are about 170 TFLOP: under 2 hours at 24 GFLOP/s, an
#            estimate for the 2-core CPU, not a measurement
#   DATASET  a prepared dataset with factors (default shapes2d_small; shapes2d is the full grid)
#   SEEDS    default 0,1,2
#   SCALE    --disentanglement_scale of every metric (default 1: the reference's sample sizes)
#   TRAIN_FLAGS    more aejax.sweep flags, e.g. --config.model.channels=(4,4,8,8) (no spaces)
#   ANALYZE_FLAGS  analyze's other flags (default: the NLL of 1000 images with k = 100)
# Re-running it skips the runs already trained and analysed (aejax.sweep resumes an unfinished
# group).
set -euo pipefail
root=${1:?usage: bench/disentanglement.sh WORKDIR [--data_dir=... --manual_dir=...]}
shift
PY=${PY:-python}
EPOCHS=${EPOCHS:-1}
DATASET=${DATASET:-shapes2d_small}
SEEDS=${SEEDS:-0,1,2}
SCALE=${SCALE:-1}
read -ra train_flags <<< "${TRAIN_FLAGS:-}"
read -ra analyze_flags <<< "${ANALYZE_FLAGS:---k=100 --nll_images=1000}"
mkdir -p "$root"
for experiment in experiments/dsprites_*.py; do
  model=$(basename "$experiment" .py)
  start=$(date +%s)
  "$PY" -m aejax.sweep --config="$experiment" --workdir="$root/$model" --vectorize \
      --sweep="seed=$SEEDS" --config.dataset="$DATASET" --config.num_epochs="$EPOCHS" \
      --config.input_mode=device "${train_flags[@]}" "$@" > "$root/$model.log" 2>&1 \
      || { echo "$model failed: see $root/$model.log" >&2; exit 1; }
  echo "$model: $(( $(date +%s) - start )) s wall" | tee -a "$root/wall_times.txt"
  for run in "$root/$model/$model"-seed=*; do
    grep -qs '"mig"' "$run/analysis/metrics.json" && continue
    "$PY" -m aejax.analyze --workdir="$run" --seed="${run##*-seed=}" --disentanglement \
        --disentanglement_scale="$SCALE" "${analyze_flags[@]}" "$@" > "$run/analyze.log" 2>&1 \
        || { echo "analysis of $run failed: see $run/analyze.log" >&2; exit 1; }
  done
done
"$PY" -m aejax.disentanglement_reference --dataset="$DATASET" --seeds="$SEEDS" \
    --disentanglement_scale="$SCALE" --out="$root/reference.json" "$@"
scores=beta_vae_accuracy,factor_vae_accuracy,mig,dci_disentanglement,dci_completeness
scores+=,dci_informativeness,sap,modularity,explicitness
"$PY" -m aejax.compare "$root" --reference="$root/reference.json" --out="$root/compare" \
    --metric="analysis.metrics.${scores//,/,analysis.metrics.}" | tee "$root/table.md"
