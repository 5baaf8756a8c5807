"""How a chunk of train steps executes on device: chosen from the backend and the model.

XLA:CPU compiles convolutions inside a while loop (what `lax.scan` lowers to) differently from the
same convolutions at the top level of a program. In the conv AE's scanned train step (jax 0.10.2,
HLO dumped with XLA_FLAGS=--xla_dump_to), 7 of the 11 convolutions (the backward ones: input
gradients against a reversed kernel, weight gradients) keep their non-canonical dimension orders
inside the loop body and are emitted as naive single-threaded LLVM loops
(`*_elemental_kernel_module`); in the same step jitted alone, XLA first rewrites them to the
canonical NHWC/HWIO form and 9 of the 11 run as Eigen's multi-threaded convolution. Dense layers
are dots and take the same path either way. So on CPU a conv model runs its steps from a host loop
over one jitted step; everywhere else the scan stays, since on GPU/TPU it is what removes the
per-step dispatch. Every choice runs the same `train_step` on the same batches and keys.
"""

LOOPS = ("auto", "scan", "unroll", "host")  # config.loop
# 'scan': one lax.scan per call; 'unroll': the same scan fully unrolled (no while loop, compile
# time grows with steps_per_call); 'host': a Python loop over one jitted step.
GROUP_RUNS = ("vmap", "unroll")  # config.group_runs: a vectorised group's run axis, batched or
# written out once per run (epochs.unrolled).


def resolve(loop: str, encoder: str, backend: str) -> str:
  """config.loop -> the execution actually used ('auto' picks from the backend and model)."""
  if loop != "auto":
    return loop
  return "host" if backend == "cpu" and encoder == "conv" else "scan"
