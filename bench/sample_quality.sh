#!/usr/bin/env bash
# Sample quality of every family on MNIST at one budget, in one command: each family's experiment
# trained for seeds 0-2 as one vectorised group (aejax.sweep --vectorize), every run analysed
# with --sample_quality (docs/analysis.md, "Sample quality"), then one aejax.compare table of
# the generated images' and the reconstructions' metrics, mean ± std over the seeds.
#
#   bench/sample_quality.sh /tmp/sample_quality [--data_dir=... --manual_dir=...]
#
# EPOCHS (default 10) is the budget of every family; SAMPLE_IMAGES (default 10000) the N of the
# metrics. Re-running it skips the runs already finished (aejax.sweep) and analyses again.
set -euo pipefail
root=${1:?usage: bench/sample_quality.sh WORKDIR [aejax.sweep flags]}
shift
PY=${PY:-python}
EPOCHS=${EPOCHS:-10}
SAMPLE_IMAGES=${SAMPLE_IMAGES:-10000}
experiments="mlp_ae sparse_ae denoising_ae rae wae vae beta_tcvae vamp burda2015_vae_2layer vqvae"
data_flags=()
for flag in "$@"; do
  case $flag in --data_dir=*|--manual_dir=*) data_flags+=("$flag") ;; esac
done
mkdir -p "$root"
for e in $experiments; do
  "$PY" -m aejax.sweep --config="experiments/$e.py" --workdir="$root/$e" --vectorize \
      --sweep="seed=0,1,2" --config.num_epochs="$EPOCHS" "$@" > "$root/$e.log" 2>&1 \
      || { echo "$e failed: see $root/$e.log" >&2; exit 1; }
done
find "$root" -mindepth 3 -maxdepth 3 -name config.json | sort | while read -r config; do
  run=$(dirname "$config")
  "$PY" -m aejax.analyze --workdir="$run" --sample_quality --sample_images="$SAMPLE_IMAGES" \
      "${data_flags[@]}" > "$run/analyze.log" 2>&1 \
      || { echo "analysis of $run failed: see $run/analyze.log" >&2; exit 1; }
done
net=lenet_mnist
metrics=""
for m in fd kid precision recall density coverage; do
  metrics+="analysis.metrics.${m}_$net,analysis.metrics.rec_${m}_$net,"
done
"$PY" -m aejax.compare "$root" --metric="${metrics%,}" --out="$root/compare"
