"""The one importance-sampled estimator of log p(x) of a VAE: training evaluation
(`config.eval_num_samples`) and `aejax.analyze` both call `importance_log_weights`.

log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K, z_k ~ q(z|x)
(`losses.iwae_bound`). The K samples are drawn and decoded in chunks, so K = 5000 fits in memory;
sample j of every image comes from the stream folded with j, so the samples do not depend on the
chunk, nor (aejax/sampling.py) on the batch's split. `sample_chunk` chooses the chunk from a memory budget.
Scores are summed in float32 whatever the model's compute dtype.
"""

from typing import Any

import jax
import jax.numpy as jnp

from aejax import losses
from aejax import memory
from aejax import sampling
from aejax.errors import UserError


def importance_log_weights(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                           stream: sampling.Stream, num_samples: int, chunk: int) -> jax.Array:
  """[K, B] log weights of K posterior samples of q(z|x_in), scored against x.

  The model gives the terms (its `posterior`, `noise_size` and `log_weights`: see
  families.vae.VAE), so every family with a likelihood shares these draws and this chunking.
  The encoder runs once; each chunk decodes chunk x B images, so a large K needs the memory of
  `chunk` samples, not of K. `chunk` need not divide K (the last chunk's extra samples are
  dropped), and it does not change the samples. `stream`: the batch's (sampling.Stream).
  """
  if not jnp.issubdtype(x.dtype, jnp.floating):
    # Integer grey levels (0-255) as Bernoulli targets give NaN scores, not an error.
    raise UserError(f"the likelihood takes the model's inputs, floats preprocessed as in "
                    f"training, not {x.dtype} images; pass images scaled to [0, 1] and binarised "
                    f"as the run was (config.input.binarize), or call Restored.nll(images, k), "
                    f"which does both")
  variables = {"params": params}
  posterior = model.apply(variables, x_in, method="posterior")
  chunk = min(chunk, num_samples)
  num_chunks = -(-num_samples // chunk)

  def one_chunk(i):
    # Sample j comes from fold_in(stream, j): the same draws for any chunk size.
    draw = lambda j: sampling.normal(sampling.fold_in(stream, j), (x.shape[0], model.noise_size))
    eps_CxBxE = jax.vmap(draw)(i * chunk + jnp.arange(chunk))
    return model.apply(variables, posterior, eps_CxBxE, x, method="log_weights")

  if num_chunks == 1:
    return one_chunk(0)
  log_w_NxCxB = jax.lax.map(one_chunk, jnp.arange(num_chunks))
  return log_w_NxCxB.reshape(-1, x.shape[0])[:num_samples]


def vae_scores(model: Any, params: Any, x: jax.Array, stream: sampling.Stream, *, k: int,
               chunk: int) -> dict[str, jax.Array]:
  """Per-example [B] scores in nats from k posterior samples: 'nll' = -log (1/k) sum_k w_k, and
  'elbo' = (1/k) sum_k log w_k (an unbiased estimate of the ELBO)."""
  log_w_KxB = importance_log_weights(model, params, x, x, stream, k, chunk)
  return {"nll": -losses.iwae_bound(log_w_KxB), "elbo": jnp.mean(log_w_KxB, axis=0)}


def sample_chunk(model: Any, params: Any, image: jax.ShapeDtypeStruct, images: int,
                 num_samples: int, most: int, budget: int, budget_text: str) -> int:
  """Samples per chunk of `importance_log_weights` for `images` images (those one device holds)
  of one `image`'s shape and dtype: at most `most` and `num_samples`, and within `budget` bytes
  of the chunk's decoded images, a sample of an image costing what its log weight computes
  (memory.traced_bytes, an upper bound). `params` may be shapes (jax.ShapeDtypeStruct).
  `budget_text` says where the budget comes from, for the error when one sample does not fit."""
  x_1x = jax.ShapeDtypeStruct((1, *image.shape), image.dtype)
  posterior = jax.eval_shape(
      lambda p, x: model.apply({"params": p}, x, method="posterior"), params, x_1x)

  def chunk_bytes(n: int) -> int:
    eps_Nx1xE = jax.ShapeDtypeStruct((n, 1, model.noise_size), jnp.float32)
    return memory.traced_bytes(
        lambda p, q, e, x: model.apply({"params": p}, q, e, x, method="log_weights"),
        params, posterior, eps_Nx1xE, x_1x)

  return memory.items_per_chunk(
      memory.bytes_per_item(chunk_bytes) * images, budget, min(most, num_samples),
      what=f"the test NLL of {images} images per device", fix=f"the budget is {budget_text}: "
      f"raise it, or lower the images evaluated at once (config.eval_batch_size)")
