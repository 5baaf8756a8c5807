#!/usr/bin/env bash
# The equal-budget comparison of the likelihood models (experiments/equal_budget.py) in one
# command: each variant trained and scored on its own, one at a time (each records its wall time
# in its main.log), then one aejax.compare table of the test NLL.
#
#   bench/equal_budget.sh /tmp/equal_budget [--data_dir=... --manual_dir=...]
#
# Re-running it skips the variants already finished (aejax.main resumes an unfinished one).
set -euo pipefail
root=${1:?usage: bench/equal_budget.sh WORKDIR [aejax.main flags]}
shift
PY=${PY:-python}
variants=$("$PY" -c "import runpy; print(' '.join(runpy.run_path('experiments/equal_budget.py')['VARIANTS']))")
mkdir -p "$root"
for v in $variants; do
  start=$(date +%s)
  "$PY" -m aejax.main --config="experiments/equal_budget.py:$v" --workdir="$root/$v" "$@" \
      > "$root/$v.log" 2>&1 || { echo "$v failed: see $root/$v.log" >&2; exit 1; }
  echo "$v: $(( $(date +%s) - start )) s wall" | tee -a "$root/wall_times.txt"
done
"$PY" -m aejax.compare "$root" --metric=nll,elbo --out="$root/compare"
