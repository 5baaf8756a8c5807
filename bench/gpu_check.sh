#!/usr/bin/env bash
# The GPU half of issue 7 in one device call: benchmark, profile and equivalence tests on a GPU.
#
# Prepare here (once; both folders are git-ignored and travel with `carry`):
#   bash tools/offline_wheels.sh .whl 3.12 tensorboardX  # TFDS read side, grain, ...
#   mkdir -p .tfds && cp -r /tmp/tfds/mnist .tfds/                  # the prepared ArrayRecord MNIST
# Then one call of the device tool, from this repo's root:
#   run(command="bash bench/gpu_check.sh", carry=[".whl", ".tfds"], timeout_s=540)
# Everything lands in $OUT (at most 8 files): bench.jsonl (one JSON line per mode, batch size
# and dtype), bench.log, trace.tgz (jax.profiler traces of the batch-128 runs, with Perfetto
# JSON) and trace_run.jsonl (its timings), tests.log, env.txt.
set -euo pipefail
: "${OUT:?set OUT to the folder the results go to}"
WHEELS=${WHEELS:-.whl}
TFDS_DIR=${TFDS_DIR:-.tfds}
WORKERS=${WORKERS:-8}
# Overridable only for a dry run on a CPU host (PY=.venv/bin/python WHEELS=none STEPS=2 ...).
PY=${PY:-python3}
BATCH_SIZES=${BATCH_SIZES:-128,1024,8192}
STEPS=${STEPS:-2000}
[[ -d "$TFDS_DIR/mnist" ]] || { echo "no prepared MNIST in $TFDS_DIR" >&2; exit 2; }
export PYTHONUNBUFFERED=1

if [[ "$WHEELS" != none ]]; then
  [[ -d "$WHEELS" ]] || { echo "no wheel folder $WHEELS: run tools/offline_wheels.sh first" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" -c "import jax, flax, optax, grain; print('jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, 'grain', grain.__version__); print(jax.devices())"
  nproc; } 2>&1 | tee "$OUT/env.txt"

# 1. The table: the VAE of experiments/vae.py (784-500-20), all modes, both dtypes.
timeout 270 "$PY" -m aejax.bench --experiment=vae --batch_sizes="$BATCH_SIZES" \
  --dtypes=float32,bfloat16 --steps="$STEPS" --stream_epochs=2 --input_workers="$WORKERS" \
  --data_dir="$TFDS_DIR" --json > "$OUT/bench.jsonl" 2> "$OUT/bench.log" \
  || echo "bench exited with $?" | tee -a "$OUT/bench.log"
"$PY" - "$OUT/bench.jsonl" <<'PY'
import json, sys
print(f"{'mode':<9}{'batch':>7} {'dtype':<9}{'examples/s':>15}{'vs base':>9}{'compile s':>10}{'TFLOP/s':>9}")
for line in open(sys.argv[1]):
  r = json.loads(line)
  print(f"{r['mode']:<9}{r['batch_size']:>7} {r['dtype']:<9}{r['examples_per_sec']:>15,.0f}"
        f"{r['ratio_to_baseline']:>8.1f}x{r['compile_s']:>10.2f}{r['flops_per_sec']/1e12:>9.2f}"
        f"  {r['device_kind']} ({r['flops_source']})")
PY

# 2. A profile of what limits batch 128 (device vs baseline): a short separate run (50 steps
#    an epoch) so tracing touches none of the table's timings; only the Perfetto JSON travels.
timeout 90 "$PY" -m aejax.bench --experiment=vae --batch_sizes=128 --modes=baseline,device \
  --num_train=6400 --steps=100 --data_dir="$TFDS_DIR" --trace_dir=/tmp/trace --json \
  > "$OUT/trace_run.jsonl" 2>> "$OUT/bench.log" || echo "trace run exited with $?" | tee -a "$OUT/bench.log"
(cd /tmp && find trace -name 'perfetto_trace.json.gz' -print0 | xargs -0 -r tar czf "$OUT/trace.tgz")

# 3. Device vs stream equivalence and bf16, on the GPU.
timeout 120 "$PY" -m pytest -q -p no:cacheprovider --data_dir="$TFDS_DIR" \
  tests/test_input_pipeline.py tests/test_mixed_precision.py > "$OUT/tests.log" 2>&1 \
  || echo "tests exited with $?"
tail -5 "$OUT/tests.log"
