r"""784-500-20 MLP VAE (the shape of the Flax VAE example), Bernoulli decoder, ELBO.

  python -m aejax.main --config=experiments/vae.py --workdir=/tmp/vae

Result (measured, CPU with 2 cores, nothing else running, 2026-12-07): test ELBO -98.75 nats per
image after the 30 epochs (dynamically binarised MNIST; reconstruction 71.73, KL 27.02), 100 s for
the whole command (bench/results/cpu/runs/vae.metrics.jsonl); -117.67, -110.52, -107.78 after
epochs 1-3 (--config.num_epochs=3).
"""

from aejax import configs


def get_config():
  return configs.mlp_vae()
