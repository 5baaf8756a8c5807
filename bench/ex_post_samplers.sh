#!/usr/bin/env bash
# The sample quality of one trained run of a family without a prior (an AE, the RAE) under each
# ex-post sampler of aejax.analyze (--ex_post_sampler: gmm, maf, two_stage, normal), in one
# command: analyze --sample_quality once per sampler, each analysis/metrics.json kept as
# OUT/<sampler>.json, and one line per sampler of FD, KID, precision and recall in OUT/table.md.
#
#   bench/ex_post_samplers.sh RUN_WORKDIR OUT [--data_dir=... --manual_dir=...]
#
# ANALYZE_FLAGS (default "--sample_images=10000 --probe_examples=10000") are analyze's other
# settings, those of bench/sample_quality.sh. The run's own analysis/ is rewritten by each.
set -euo pipefail
run=${1:?usage: bench/ex_post_samplers.sh RUN_WORKDIR OUT [data flags]}
out=${2:?usage: bench/ex_post_samplers.sh RUN_WORKDIR OUT [data flags]}
shift 2
PY=${PY:-python}
read -ra analyze_flags <<< "${ANALYZE_FLAGS:---sample_images=10000 --probe_examples=10000}"
mkdir -p "$out"
for sampler in gmm maf two_stage normal; do
  "$PY" -m aejax.analyze --workdir="$run" --sample_quality --ex_post_sampler="$sampler" \
      "${analyze_flags[@]}" "$@" > "$out/$sampler.log" 2>&1 \
      || { echo "analyze with $sampler failed: see $out/$sampler.log" >&2; exit 1; }
  cp "$run/analysis/metrics.json" "$out/$sampler.json"
done
"$PY" - "$out" <<'PYEOF' | tee "$out/table.md"
import json, sys
print("| sampler | FD | KID | precision | recall |\n|---|---|---|---|---|")
for s in ("gmm", "maf", "two_stage", "normal"):
  m = json.load(open(f"{sys.argv[1]}/{s}.json"))["metrics"]
  print(f"| {s} | " + " | ".join(f"{m[k + '_lenet_mnist']:.4g}"
                                 for k in ("fd", "kid", "precision", "recall")) + " |")
PYEOF
