#!/usr/bin/env bash
# Sample quality of every family on MNIST at one budget, in one command: each family's experiment
# trained for seeds 0-2 as one vectorised group (aejax.sweep --vectorize), every run analysed
# with --sample_quality (docs/analysis.md, "Sample quality"), then one aejax.compare table of
# the generated images' and the reconstructions' metrics, mean ± std over the seeds.
#
#   bench/sample_quality.sh /tmp/sample_quality [--data_dir=... --manual_dir=...]
#
# EPOCHS (default 5) is the budget of every family; SAMPLE_IMAGES (default 10000) the N of the
# metrics; ANALYZE_FLAGS (default "--k=1000 --nll_images=2000 --probe_examples=10000") the rest
# of aejax.analyze's settings: the test NLL of the families that have one from k = 1000
# importance samples on the first 2,000 test images; EXPERIMENTS the experiment files (default:
# one per family, the AE's sparse and denoising variants and the flow VAE's planar and IAF
# posteriors included).
# Training evaluates the ELBO only (--config.eval_num_samples=0: some experiments estimate the NLL
# with k = 5000 after their last epoch, hours on a CPU); the NLL comes from the analysis.
# Re-running it skips the runs already finished (aejax.sweep) and the analyses already written
# with these settings (their flags are kept in analyze.flags beside analyze.log).
set -euo pipefail
root=${1:?usage: bench/sample_quality.sh WORKDIR [aejax.sweep flags]}
shift
PY=${PY:-python}
EPOCHS=${EPOCHS:-5}
SAMPLE_IMAGES=${SAMPLE_IMAGES:-10000}
EXPERIMENTS=${EXPERIMENTS:-"vae beta_tcvae vamp burda2015_vae_2layer mlp_ae sparse_ae denoising_ae rae wae vqvae flow_vae_planar flow_vae_iaf"}
ANALYZE_FLAGS=${ANALYZE_FLAGS:-"--k=1000 --nll_images=2000 --probe_examples=10000"}
data_flags=()
for flag in "$@"; do
  case $flag in --data_dir=*|--manual_dir=*) data_flags+=("$flag") ;; esac
done
mkdir -p "$root"
for e in $EXPERIMENTS; do
  # Burda et al.'s two-layer experiment follows their 3280-epoch learning-rate stages: at this
  # budget, a constant rate, as every other experiment here.
  case $e in burda2015_*) schedule=(--config.opt.schedule=constant) ;; *) schedule=() ;; esac
  start=$(date +%s)
  "$PY" -m aejax.sweep --config="experiments/$e.py" --workdir="$root/$e" --vectorize \
      --sweep="seed=0,1,2" --config.num_epochs="$EPOCHS" --config.eval_num_samples=0 \
      "${schedule[@]}" "$@" \
      > "$root/$e.log" 2>&1 \
      || { echo "$e failed: see $root/$e.log" >&2; exit 1; }
  echo "train $e (3 seeds): $(( $(date +%s) - start )) s wall" | tee -a "$root/wall_times.txt"
  for config in "$root/$e"/*/config.json; do
    run=$(dirname "$config")
    settings="--sample_images=$SAMPLE_IMAGES $ANALYZE_FLAGS"
    done_with=$(cat "$run/analyze.flags" 2>/dev/null || true)
    if [[ -f "$run/analysis/metrics.json" && "$done_with" == "$settings" ]]; then
      continue
    fi
    start=$(date +%s)
    # shellcheck disable=SC2086  # ANALYZE_FLAGS is a list of flags.
    "$PY" -m aejax.analyze --workdir="$run" --sample_quality --sample_images="$SAMPLE_IMAGES" \
        $ANALYZE_FLAGS "${data_flags[@]}" > "$run/analyze.log" 2>&1 \
        || { echo "analysis of $run failed: see $run/analyze.log" >&2; exit 1; }
    echo "$settings" > "$run/analyze.flags"
    echo "analyze ${run#"$root"/}: $(( $(date +%s) - start )) s wall" | tee -a "$root/wall_times.txt"
  done
done
net=lenet_mnist
metrics="analysis.metrics.nll,analysis.metrics.sq_err_per_image,"
for m in fd kid precision recall density coverage; do
  metrics+="analysis.metrics.${m}_$net,analysis.metrics.rec_${m}_$net,"
done
"$PY" -m aejax.compare "$root" --by=folder --metric="${metrics%,}" --out="$root/compare"
