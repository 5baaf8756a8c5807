"""The KL parts of a restored VAE-family run (Chen et al., 2018): index-code mutual information,
total correlation and dimension-wise KL of the aggregate posterior of a set of images, by the
estimator beta_tcvae trains with (losses.kl_parts), the whole set its references."""

import jax
import jax.numpy as jnp
import numpy as np

from aejax import losses
from aejax import sampling
from aejax.analysis import restored as restored_lib
from aejax.data import dataset

# Samples scored per call: each against every one of the N posteriors, [CHUNK, N, Z] float32
# (~400 MB for the 10,000 MNIST test images with 20 latents).
CHUNK = 500


def estimate(run: restored_lib.Restored, x: np.ndarray, rng: jax.Array) -> dict[str, float]:
  """mi, tc and dwkl (nats) of q(z) = 1/N sum_n q(z|x_n) over the N images x: one sample
  z_n ~ q(z|x_n) per image (image n's from its own key folded off rng), each part the mean over
  the N samples of losses.kl_parts with the N posteriors as references (the exact aggregate,
  no minibatch weighting). Their sum is the mean single-sample KL(q(z|x) || p(z))."""
  mean_NxZ, logvar_NxZ = (jnp.asarray(a) for a in run.posterior(x))
  n = mean_NxZ.shape[0]
  eps_NxZ = sampling.normal(sampling.example_keys(rng, 0, n), mean_NxZ.shape[1:])
  z_NxZ = mean_NxZ + jnp.exp(0.5 * logvar_NxZ) * eps_NxZ
  parts = jax.jit(losses.kl_parts, static_argnums=5)
  # Padded to whole chunks (one compile); the padding's rows are cut before summing.
  padded = [dataset.pad_to_multiple(np.asarray(a), CHUNK)[0]
            for a in (z_NxZ, mean_NxZ, logvar_NxZ)]
  totals = {"mi": 0.0, "tc": 0.0, "dwkl": 0.0}
  for i in range(0, len(padded[0]), CHUNK):
    out = jax.device_get(parts(*(a[i:i + CHUNK] for a in padded), mean_NxZ, logvar_NxZ, None))
    for k in totals:
      totals[k] += float(np.sum(out[k][:n - i], dtype=np.float64))
  return {k: v / n for k, v in totals.items()}
