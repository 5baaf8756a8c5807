#!/usr/bin/env bash
# Every GPU figure of the README in one call of a GPU host without internet: the speed table,
# a profile, the per-step cost of the Burda et al. schedule, and full training runs.
#
# Prepare here (once; both folders are git-ignored and travel with the device tool's `carry`):
#   bash tools/offline_wheels.sh .whl 3.12 tensorboardX   # TFDS read side, grain, ml_collections
#   mkdir -p .tfds && cp -r "$TFDS_DATA_DIR/mnist" .tfds/  # the prepared ArrayRecord MNIST
#   rm -rf .tfds/mnist/*/decoded_uint8                   # rebuilt there; keeps the carry small
# Then, from the repository root on the GPU host:
#   OUT=/some/dir bash bench/gpu_check.sh                  # PARTS=table,trace,... for a subset
# Dry run on a CPU host (what the test suite does): PY=.venv/bin/python WHEELS=none STEPS=2 DRY=1.
#
# Parts (PARTS, comma-separated; default all but the optional ones):
#   table     aejax.bench, the VAE of experiments/vae.py: baseline/device/stream x batch
#             128/1024/8192 x float32/bfloat16 -> bench.jsonl
#   trace     a jax.profiler trace of batch 128 (VAE, device and baseline) and batch 20 (Burda
#             VAE, device) -> trace.tgz (Perfetto JSON), their timings in trace.jsonl
#   burda     time per step of experiments/burda2015_vae.py at its batch of 20 -> bench.jsonl
#   convruns  full default runs of conv_ae, conv_vae, vqvae -> runs.jsonl
#   recipes   (optional) the Hinton reproduction's cosine schedule over 100 epochs -> runs.jsonl
#   runs      full default runs, one at a time: hinton2006_ae30 and its recipe variants, vae
#             -> runs.jsonl (wall time, last test line)
#   replicas  (optional) aejax.bench --replicas=1,8,32 for the VAE at batch 128 -> bench.jsonl
#   conv      (optional) aejax.bench of conv_ae in both convolution formulations -> bench.jsonl
# Everything lands in $OUT (the device tool brings back at most 8 files): env.txt, bench.jsonl,
# bench.log, trace.tgz, trace.jsonl, runs.jsonl, runs.log, summary.txt.
set -euo pipefail
: "${OUT:?set OUT to the folder the results go to}"
WHEELS=${WHEELS:-.whl}
TFDS_DIR=${TFDS_DIR:-.tfds}
WORKERS=${WORKERS:-8}
PARTS=${PARTS:-runs,table,trace,burda,convruns}
# Overridable only for a dry run on a CPU host.
PY=${PY:-python3}
BATCH_SIZES=${BATCH_SIZES:-128,1024,8192}
STEPS=${STEPS:-2000}
DRY=${DRY:-}
[[ -d "$TFDS_DIR/mnist" ]] || { echo "no prepared MNIST in $TFDS_DIR" >&2; exit 2; }
export PYTHONUNBUFFERED=1
has() { [[ ",$PARTS," == *",$1,"* ]]; }
# Short runs (steps, train images, epochs) in a dry run: the commands are checked, not timed.
if [[ -n "$DRY" ]]; then
  SMALL=(--num_train=1024)
  RUN_ARGS=(--config.num_epochs=1 --config.batch_size=1000 --config.model.hidden="(16,)"
            --config.model.channels="(2, 4)")
else
  SMALL=(); RUN_ARGS=()
fi

if [[ "$WHEELS" != none ]]; then
  [[ -d "$WHEELS" ]] || { echo "no wheel folder $WHEELS: run tools/offline_wheels.sh first" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
fi

{ date -u +%Y-%m-%dT%H:%MZ
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" -c "import jax, flax, optax, grain; print('jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, 'grain', grain.__version__); print(jax.devices())"
  nproc; } 2>&1 | tee "$OUT/env.txt"

bench() {  # bench FILE LIMIT_S ARGS...: one aejax.bench call, its JSON rows appended to FILE.
  local file=$1 limit=$2; shift 2
  echo "== aejax.bench $*" >> "$OUT/bench.log"
  timeout "$limit" "$PY" -m aejax.bench --data_dir="$TFDS_DIR" --json "${SMALL[@]}" "$@" \
    >> "$OUT/$file" 2>> "$OUT/bench.log" || echo "bench $* exited with $?" | tee -a "$OUT/bench.log"
}

# 1. Full runs, one at a time: the wall time of the whole command and the last test line.
train() {  # train NAME LIMIT_S EXPERIMENT [OVERRIDES...]
  local name=$1 limit=$2 exp=$3; shift 3
  local workdir=/tmp/runs/$name t0 t1 rc=0
  rm -rf "$workdir"
  t0=$(date +%s.%N)
  timeout "$limit" "$PY" -m aejax.main --config="experiments/$exp.py" --workdir="$workdir" \
    --data_dir="$TFDS_DIR" "$@" "${RUN_ARGS[@]}" >> "$OUT/runs.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  "$PY" - "$name" "$exp" "$rc" "$t0" "$t1" "$workdir" "$*" >> "$OUT/runs.jsonl" <<'PY'
import json, os, sys
name, exp, rc, t0, t1, workdir, overrides = sys.argv[1:]
lines = []
path = os.path.join(workdir, "metrics.jsonl")
if os.path.exists(path):
  lines = [json.loads(l) for l in open(path) if l.strip()]
test = [l for l in lines if l.get("split") == "test"]
train = [l for l in lines if l.get("split") == "train"]
print(json.dumps({"name": name, "experiment": exp, "overrides": overrides, "rc": int(rc),
                  "wall_s": float(t1) - float(t0), "epochs": test[-1]["epoch"] if test else None,
                  "test": test[-1] if test else None,
                  "train_examples_per_sec": [round(l["examples_per_sec"]) for l in train[-3:]]}))
PY
  echo "$name rc=$rc $(tail -1 "$OUT/runs.jsonl" | cut -c1-300)"
}
if has runs; then
  train hinton2006_ae30 150 hinton2006_ae30
  train hinton2006_ae30-cosine 150 hinton2006_ae30 --config.opt.schedule=cosine
  train hinton2006_ae30-cosine-mse 150 hinton2006_ae30 --config.opt.schedule=cosine --config.loss=mse
  train vae 120 vae
fi

# 2. The table.
has table && bench bench.jsonl 240 --experiment=vae --batch_sizes="$BATCH_SIZES" --dtypes=float32,bfloat16 \
  --steps="$STEPS" --stream_epochs=2 --input_workers="$WORKERS"
# 3. Vectorised runs: aggregate examples/s of a group beside one run.
has replicas && bench bench.jsonl 120 --experiment=vae --batch_sizes=128 --modes=device --replicas=1,8,32 \
  --steps="$STEPS"
# 4. The two convolution formulations of the conv AE.
if has conv; then
  for impl in strided space_to_depth; do
    bench bench.jsonl 90 --experiment=conv_ae --batch_sizes=128,1024 --modes=baseline,device \
      --steps="$STEPS" --conv_impl="$impl"
  done
fi
# 5. Profiles: short separate runs so tracing touches none of the table's timings.
if has trace; then
  bench trace.jsonl 90 --experiment=vae --batch_sizes=128 --modes=baseline,device --num_train=6400 \
    --steps=100 --trace_dir=/tmp/trace/vae
  bench trace.jsonl 90 --experiment=burda2015_vae --batch_sizes=20 --modes=device --num_train=6000 \
    --steps=300 --trace_dir=/tmp/trace/burda
  (cd /tmp && find trace -name 'perfetto_trace.json.gz' -print0 | xargs -0 -r tar czf "$OUT/trace.tgz")
fi
# 6. Burda et al.'s VAE at its batch of 20: one epoch is 3000 steps.
has burda && bench bench.jsonl 120 --experiment=burda2015_vae --batch_sizes=20 --modes=baseline,device \
  --steps="$STEPS"

# 7. Recipe variants of the Hinton reproduction: the cosine decay over fewer epochs stops
#    before the overfitting that the 200-epoch run shows.
if has recipes; then
  train hinton2006_ae30-100ep 100 hinton2006_ae30 --config.num_epochs=100
fi
# 8. The conv families' full runs.
if has convruns; then
  train conv_ae 120 conv_ae
  train conv_vae 120 conv_vae
  train vqvae 120 vqvae
fi

{ echo "== bench"
  [[ -f "$OUT/bench.jsonl" ]] && "$PY" - "$OUT/bench.jsonl" <<'PY'
import json, sys
print(f"{'experiment':<15}{'mode':<9}{'batch':>7} {'dtype':<9}{'examples/s':>13}{'vs base':>9}"
      f"{'us/step':>9}{'TFLOP/s':>8}")
for line in open(sys.argv[1]):
  r = json.loads(line)
  ratio = f"{r['ratio_to_baseline']:.1f}x" if r.get("ratio_to_baseline") else "-"
  us = 1e6 * r["seconds"] / r["timed_steps"]
  extra = f" x{r['replicas']}" if r.get("replicas") else ""
  extra += " s2d" if r.get("conv_impl") == "space_to_depth" else ""
  print(f"{r['experiment']:<15}{r['mode'] + extra:<9}{r['batch_size']:>7} {r['dtype']:<9}"
        f"{r['examples_per_sec']:>13,.0f}{ratio:>9}{us:>9.1f}{r['flops_per_sec'] / 1e12:>8.2f}")
PY
  echo "== runs"
  [[ -f "$OUT/runs.jsonl" ]] && cut -c1-400 "$OUT/runs.jsonl"
} 2>&1 | tee "$OUT/summary.txt"
