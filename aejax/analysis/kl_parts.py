"""The KL parts of a restored VAE-family run (Chen et al., 2018): index-code mutual information,
total correlation and dimension-wise KL of the aggregate posterior of a set of images, by the
estimator beta_tcvae trains with (losses.kl_parts), the whole set its references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aejax import losses
from aejax import memory
from aejax import sampling
from aejax.analysis import batches
from aejax.analysis import restored as restored_lib

# Samples scored per call at most, each against every one of the N posteriors ([rows, N, Z]
# float32: ~400 MB for the 10,000 MNIST test images with 20 latents); fewer where `budget`
# requires.
MOST_ROWS = 500


def rows_per_chunk(num_refs: int, latents: int, budget: int, budget_text: str) -> int:
  """Samples per call of losses.kl_parts against `num_refs` posteriors within `budget` bytes."""
  ref_NxZ = jax.ShapeDtypeStruct((num_refs, latents), jnp.float32)
  rows = lambda n: (jax.ShapeDtypeStruct((n, latents), jnp.float32),) * 3
  per_row = memory.bytes_per_item(lambda n: memory.traced_bytes(
      functools.partial(losses.kl_parts, dataset_size=None), *rows(n), ref_NxZ, ref_NxZ))
  return memory.items_per_chunk(per_row, budget, min(MOST_ROWS, num_refs),
                                what=f"the KL parts of {num_refs} images",
                                fix=f"the budget is {budget_text}: raise it, or lower "
                                    f"--nll_images")


def estimate(run: restored_lib.Restored, x: np.ndarray, rng: jax.Array,
             budget: tuple[int, str] = (2**62, "unbounded")) -> dict[str, float]:
  """mi, tc and dwkl (nats) of q(z) = 1/N sum_n q(z|x_n) over the N images x: one sample
  z_n ~ q(z|x_n) per image (image n's from its own key folded off rng), each part the mean over
  the N samples of losses.kl_parts with the N posteriors as references (the exact aggregate,
  no minibatch weighting). Their sum is the mean single-sample KL(q(z|x) || p(z)). The samples
  are scored in chunks that fit `budget` (bytes, where it comes from); the parts do not depend
  on the chunk."""
  mean_NxZ, logvar_NxZ = (jnp.asarray(a) for a in run.posterior(x))
  n, latents = mean_NxZ.shape
  eps_NxZ = sampling.normal(sampling.example_keys(rng, 0, n), mean_NxZ.shape)
  z_NxZ = mean_NxZ + jnp.exp(0.5 * logvar_NxZ) * eps_NxZ
  parts = jax.jit(functools.partial(losses.kl_parts, dataset_size=None))
  per_row = batches.map_padded(lambda _, *rows: parts(*rows, mean_NxZ, logvar_NxZ),
                               (z_NxZ, mean_NxZ, logvar_NxZ), rows_per_chunk(n, latents, *budget))
  return {k: float(np.sum(v, dtype=np.float64)) / n for k, v in per_row.items()}
