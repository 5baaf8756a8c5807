"""Objectives. Every term is per example (shape [B], in nats or squared error per image), so the
train step can average it and evaluation can sum it under a padding mask."""

import jax
import jax.numpy as jnp
import optax

RECONSTRUCTION = ("mse", "bce")


def _sum_per_example(v: jax.Array) -> jax.Array:
  return v.reshape(v.shape[0], -1).sum(axis=-1)


def squared_error(x_hat: jax.Array, x: jax.Array) -> jax.Array:
  """Squared error summed over every pixel of each image: [B]."""
  return _sum_per_example(jnp.square(x_hat - x))


def bernoulli_nll(logits: jax.Array, x: jax.Array) -> jax.Array:
  """-log p(x | logits) under independent Bernoullis, summed per image: [B].

  Also the cross-entropy against grey-level targets in [0, 1].
  """
  return -_sum_per_example(bernoulli_log_prob(logits, x))


def bernoulli_log_prob(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x) of each pixel under a Bernoulli with these logits (x in {0, 1}; also minus the
  cross-entropy against grey levels in [0, 1]), elementwise."""
  return -optax.sigmoid_binary_cross_entropy(logits, x)


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """log N(x; mean, exp(log_std)^2), elementwise: a density on the pixel values."""
  return -0.5 * (jnp.log(2 * jnp.pi) + jnp.square((x - mean) * jnp.exp(-log_std))) - log_std


def discretized_logistic_log_prob(x: jax.Array, loc: jax.Array, log_scale: jax.Array,
                                  levels: int = 256) -> jax.Array:
  """log P(x) of each pixel under a logistic(loc, exp(log_scale)) discretised to `levels` values
  k / (levels - 1) of [0, 1] (Salimans et al., 2017): the logistic's mass on the bin of width
  1 / (levels - 1) centred on x, the end bins taking the tails below 0 and above 1; a
  probability, summing to 1 over the levels. x must lie on the grid (8-bit images scaled to
  [0, 1], binarised pixels), elementwise.

  Inside, log(sigmoid(a) - sigmoid(b)) = b + log(expm1(a - b)) - softplus(a) - softplus(b) with
  a - b = the bin's width over the scale: finite and exact however far x is from loc, where the
  plain difference of the two sigmoids rounds to 0.
  """
  half_bin = 0.5 / (levels - 1)
  inv_scale = jnp.exp(-log_scale)
  a = (x - loc + half_bin) * inv_scale  # The bin's upper edge, standardised.
  b = (x - loc - half_bin) * inv_scale
  softplus = jax.nn.softplus
  inside = b + jnp.log(jnp.expm1(a - b)) - softplus(a) - softplus(b)
  level = jnp.round(x * (levels - 1))
  return jnp.where(level <= 0, -softplus(-a), jnp.where(level >= levels - 1, -softplus(b), inside))


def bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
  """A log-likelihood per image in nats as bits per dimension (pixel x channel): nats / (D ln 2)."""
  return nats / (num_dims * jnp.log(2.0))


def gaussian_kl(mean_q: jax.Array, logvar_q: jax.Array, mean_p: jax.Array,
                logvar_p: jax.Array) -> jax.Array:
  """KL(q || p) between diagonal Gaussians, summed over the last axis: [B]."""
  return 0.5 * jnp.sum(
      logvar_p - logvar_q + (jnp.exp(logvar_q) + jnp.square(mean_q - mean_p)) / jnp.exp(logvar_p)
      - 1.0, axis=-1)


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  zeros = jnp.zeros_like(mean)
  return gaussian_kl(mean, logvar, zeros, zeros)


def log_normal_diag(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mean, diag(exp(logvar))), summed over the last axis."""
  return -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + logvar + jnp.square(z - mean) * jnp.exp(-logvar),
                        axis=-1)


def iwae_bound(log_w_KxB: jax.Array) -> jax.Array:
  """Importance-weighted bound (Burda et al., 2015), per example: log mean_k w_k, [B].

  `log_w_KxB[k, b] = log p(x_b, z_kb) - log q(z_kb | x_b)` for K independent posterior samples.
  logsumexp keeps it finite where the weights themselves under/overflow. K = 1 is the
  single-sample ELBO; as K grows it rises towards log p(x). Its negative with a large K is the
  usual test NLL estimate.
  """
  return jax.nn.logsumexp(log_w_KxB, axis=0) - jnp.log(log_w_KxB.shape[0])


def miwae_bound(log_w_MxKxB: jax.Array) -> jax.Array:
  """MIWAE(M, K) (Rainforth et al., 2018): the mean of M independent IWAE(K) bounds, per
  example: (1/M) sum_m log mean_k w_mk, [B]. M = 1 is IWAE(K); K = 1 the M-sample ELBO."""
  return jnp.mean(jax.vmap(iwae_bound)(log_w_MxKxB), axis=0)


def ciwae_bound(log_w_KxB: jax.Array, beta: jax.Array) -> jax.Array:
  """CIWAE(beta) (Rainforth et al., 2018): beta * ELBO + (1 - beta) * IWAE(K) of the same K
  samples, per example, [B]; the ELBO is mean_k log w_k. beta = 0 is IWAE(K), beta = 1 the
  K-sample ELBO."""
  return beta * jnp.mean(log_w_KxB, axis=0) + (1 - beta) * iwae_bound(log_w_KxB)


def l1_penalty(z_BxZ: jax.Array) -> jax.Array:
  """Sum of |z| over the code, per example: [B]."""
  return jnp.sum(jnp.abs(z_BxZ), axis=-1)


def kl_sparsity(a_BxZ: jax.Array, target: float) -> jax.Array:
  """Sum over units j of KL(Bernoulli(target) || Bernoulli(mean_b a_bj)): [B].

  The penalty of the classic sparse AE (Ng's notes): it depends on the batch's mean activation of
  each unit, so it is a batch quantity; every example carries the same value so that its batch
  mean (what the train step minimises) is the penalty itself. Activations must lie in (0, 1).
  """
  return jnp.broadcast_to(sparsity_of_mean(jnp.mean(a_BxZ, axis=0), target), a_BxZ.shape[:1])


def sparsity_of_mean(mean_a_Z: jax.Array, target: float) -> jax.Array:
  """The sparsity KL from the mean activation of each unit (of a batch, or of a whole split)."""
  rho_hat_Z = jnp.clip(mean_a_Z, 1e-6, 1 - 1e-6)
  return jnp.sum(target * jnp.log(target / rho_hat_Z)
                 + (1 - target) * jnp.log((1 - target) / (1 - rho_hat_Z)))


def vq_terms(z_e_BxNxD: jax.Array, codes_BxNxD: jax.Array) -> dict[str, jax.Array]:
  """The two VQ-VAE terms, summed per example: [B] each.

  codebook: ||sg(z_e) - e||^2 moves the codes towards the encoder's outputs (and only the codes);
  commitment: ||z_e - sg(e)||^2 keeps the encoder near its codes (and moves only the encoder).
  """
  sg = jax.lax.stop_gradient
  return {"codebook": _sum_per_example(jnp.square(sg(z_e_BxNxD) - codes_BxNxD)),
          "commitment": _sum_per_example(jnp.square(z_e_BxNxD - sg(codes_BxNxD)))}


def code_counts(indices_BxN: jax.Array, codebook_size: int) -> jax.Array:
  """How often each code is chosen in each example: [B, codebook_size]. Additive over examples,
  so counts of several batches (or devices) pool by summing."""
  return jax.nn.one_hot(indices_BxN.reshape(indices_BxN.shape[0], -1), codebook_size,
                        dtype=jnp.float32).sum(axis=1)


def usage_of_counts(counts_K: jax.Array) -> dict[str, jax.Array]:
  """Perplexity of the code frequencies (1 = a single code in use, codebook_size = all used
  equally) and the fraction of codes used, from pooled counts."""
  p_K = counts_K / jnp.sum(counts_K)
  return {"code_perplexity": jnp.exp(-jnp.sum(jnp.where(p_K > 0, p_K * jnp.log(p_K), 0.0))),
          "codes_used": jnp.mean((counts_K > 0).astype(jnp.float32))}


def code_usage(indices_BxN: jax.Array, codebook_size: int,
               axis_name: str | None = None) -> dict[str, jax.Array]:
  """Codebook usage of a batch (usage_of_counts), given to every example. Under pmap
  (`axis_name`) the counts of every device are pooled first: usage is not additive, so a mean
  of per-device values would not be the usage of the global batch."""
  counts_K = jnp.sum(code_counts(indices_BxN, codebook_size), axis=0)
  if axis_name:
    counts_K = jax.lax.psum(counts_K, axis_name)
  b = indices_BxN.shape[:1]
  return {k: jnp.broadcast_to(v, b) for k, v in usage_of_counts(counts_K).items()}


def ae_objective(outputs: dict[str, jax.Array], x: jax.Array,
                 reconstruction: str) -> dict[str, jax.Array]:
  """Reconstruction loss of a deterministic autoencoder, plus both error measures."""
  logits = outputs["logits"]
  metrics = {"sq_err": squared_error(jax.nn.sigmoid(logits), x),
             "bce": bernoulli_nll(logits, x)}
  if reconstruction not in RECONSTRUCTION:
    raise ValueError(f"unknown loss {reconstruction!r}; use one of {RECONSTRUCTION}")
  metrics["loss"] = metrics["sq_err" if reconstruction == "mse" else "bce"]
  return metrics


def elbo_objective(outputs: dict[str, jax.Array], rec: jax.Array) -> dict[str, jax.Array]:
  """Negative ELBO = -E_q[log p(x|z)] + KL(q(z|x) || p(z)), one posterior sample, in nats;
  `rec` is -log p(x|z) at the sample, [B] (the decoder's distribution: aejax.decoder_dists)."""
  kl = kl_to_standard_normal(outputs["mean"], outputs["logvar"])
  return {"loss": rec + kl, "rec": rec, "kl": kl, "elbo": -(rec + kl)}


def imq_kernel(a_NxZ: jax.Array, b_MxZ: jax.Array, scale: float) -> jax.Array:
  """Inverse multiquadratic kernel C / (C + ||a - b||^2) between every pair of rows: [N, M]."""
  sq_dist_NxM = jnp.sum(jnp.square(a_NxZ[:, None, :] - b_MxZ[None, :, :]), axis=-1)
  return scale / (scale + sq_dist_NxM)


def mmd_imq(z_BxZ: jax.Array, prior_BxZ: jax.Array,
            axis_name: str | None = None) -> jax.Array:
  """The unbiased (U-statistic) MMD^2 of WAE-MMD (Tolstikhin et al., 2018) between the codes and
  as many prior samples, IMQ kernel with C = 2 * Z (the N(0, I) prior's sigma^2 = 1), as per
  example terms whose batch mean is the statistic: [B]. Example i carries
    1/(n-1) sum_{j != i} [k(z_i, z_j) + k(p_i, p_j)] - 1/n sum_j [k(z_i, p_j) + k(p_i, z_j)].

  Under pmap (`axis_name`) every device's terms are taken against the codes and samples of the
  whole batch (all-gathered), so the mean over devices is the global batch's statistic and the
  gradient reaches each code through every device's terms.
  """
  b, latents = z_BxZ.shape
  first = 0
  all_z_NxZ, all_p_NxZ = z_BxZ, prior_BxZ
  if axis_name:
    all_z_NxZ = jax.lax.all_gather(z_BxZ, axis_name, tiled=True)
    all_p_NxZ = jax.lax.all_gather(prior_BxZ, axis_name, tiled=True)
    first = jax.lax.axis_index(axis_name) * b
  n = all_z_NxZ.shape[0]
  scale = 2.0 * latents
  # The U-statistic leaves out each example's pair with itself.
  others_BxN = jnp.arange(n)[None, :] != (first + jnp.arange(b))[:, None]
  same = lambda k_BxN: jnp.sum(jnp.where(others_BxN, k_BxN, 0.0), axis=1) / (n - 1)
  within_B = same(imq_kernel(z_BxZ, all_z_NxZ, scale)) + same(
      imq_kernel(prior_BxZ, all_p_NxZ, scale))
  cross_B = (jnp.sum(imq_kernel(z_BxZ, all_p_NxZ, scale), axis=1)
             + jnp.sum(imq_kernel(prior_BxZ, all_z_NxZ, scale), axis=1)) / n
  return within_B - cross_B


def code_l2(z_BxZ: jax.Array) -> jax.Array:
  """||z||^2 / 2 per example: [B] (the RAE's code penalty)."""
  return 0.5 * jnp.sum(jnp.square(z_BxZ), axis=-1)


def params_l2(params) -> jax.Array:
  """Sum of squared parameters / 2, over every leaf of the tree: a scalar."""
  return 0.5 * sum(jnp.sum(jnp.square(p.astype(jnp.float32))) for p in jax.tree.leaves(params))


def jacobian_sq_norm(f, z_BxZ: jax.Array) -> jax.Array:
  """||d f(z) / d z||_F^2 per example, f mapping one code [Z] to an output [D]: [B] (the RAE's
  gradient penalty). The exact Jacobian, by Z forward-mode products: cheap for codes of tens."""
  jac_sq = lambda z_Z: jnp.sum(jnp.square(jax.jacfwd(f)(z_Z).astype(jnp.float32)))
  return jax.vmap(jac_sq)(z_BxZ)


def kl_parts(z_BxZ: jax.Array, mean_BxZ: jax.Array, logvar_BxZ: jax.Array, mean_MxZ: jax.Array,
             logvar_MxZ: jax.Array, dataset_size: jax.Array | float | None) -> dict[str, jax.Array]:
  """The three parts of the KL term of the ELBO (Chen et al., 2018), per example: [B] each.

  For a sample z_i ~ q(z|x_i) of example i,
    mi   = log q(z_i|x_i) - log q(z_i)                 (index-code mutual information)
    tc   = log q(z_i) - sum_d log q(z_id)              (total correlation)
    dwkl = sum_d log q(z_id) - log p(z_i)              (dimension-wise KL to N(0, I))
  so that their batch means estimate I(x; z), KL(q(z) || prod_d q(z_d)) and
  sum_d KL(q(z_d) || p(z_d)) of the aggregate posterior q(z) = 1/N sum_n q(z|x_n).

  q(z_i) and each marginal q(z_id) come from the M posteriors (mean_MxZ, logvar_MxZ) by
    log q(z_i) ~= logsumexp_j log q(z_i|x_j) - log c   (and per dimension likewise),
  with c = N * M (`dataset_size` N): the paper's minibatch weighted sampling, the M posteriors a
  minibatch of the N training images; or, with `dataset_size` None, c = M: the M posteriors are
  the whole set and q(z) is its exact aggregate posterior (what analysis measures).
  """
  # log q(z_id | x_j) for every example i, reference j and dimension d: [B, M, Z].
  log_q_BxMxZ = -0.5 * (jnp.log(2 * jnp.pi) + logvar_MxZ[None]
                        + jnp.square(z_BxZ[:, None] - mean_MxZ[None]) * jnp.exp(-logvar_MxZ[None]))
  m = mean_MxZ.shape[0]
  log_c = jnp.log(m * jnp.asarray(1.0 if dataset_size is None else dataset_size, jnp.float32))
  log_qz_B = jax.nn.logsumexp(log_q_BxMxZ.sum(axis=-1), axis=1) - log_c
  log_prod_qz_B = jnp.sum(jax.nn.logsumexp(log_q_BxMxZ, axis=1) - log_c, axis=-1)
  log_qzx_B = log_normal_diag(z_BxZ, mean_BxZ, logvar_BxZ)
  log_pz_B = log_normal_diag(z_BxZ, jnp.zeros_like(z_BxZ), jnp.zeros_like(z_BxZ))
  return {"mi": log_qzx_B - log_qz_B, "tc": log_qz_B - log_prod_qz_B,
          "dwkl": log_prod_qz_B - log_pz_B}


def batch_kl_parts(z_BxZ: jax.Array, mean_BxZ: jax.Array, logvar_BxZ: jax.Array,
                   dataset_size: jax.Array | float, axis_name: str | None = None
                   ) -> dict[str, jax.Array]:
  """kl_parts of a training batch by minibatch weighted sampling, the batch's own posteriors the
  M references. Under pmap (`axis_name`) the references are the whole batch's (all-gathered),
  so the mean over devices is the global batch's estimate and the gradient reaches each
  posterior through every device's terms."""
  mean_MxZ, logvar_MxZ = mean_BxZ, logvar_BxZ
  if axis_name:
    mean_MxZ = jax.lax.all_gather(mean_BxZ, axis_name, tiled=True)
    logvar_MxZ = jax.lax.all_gather(logvar_BxZ, axis_name, tiled=True)
  return kl_parts(z_BxZ, mean_BxZ, logvar_BxZ, mean_MxZ, logvar_MxZ, dataset_size)


def batch_mean(v_Bx: jax.Array, axis_name: str | None = None) -> jax.Array:
  """The mean over the whole (global) batch's first axis. Under pmap (`axis_name`) every device
  holds an equal share, so the mean of the devices' means is the global batch's."""
  m = jnp.mean(v_Bx, axis=0)
  return jax.lax.pmean(m, axis_name) if axis_name else m


def latent_covariance(mean_BxZ: jax.Array, logvar_BxZ: jax.Array | None = None,
                      axis_name: str | None = None) -> jax.Array:
  """DIP-VAE's covariance of the code over the (global) batch, [Z, Z]: Cov[mu(x)] = E[mu mu^T] -
  E[mu] E[mu]^T of the encoder means (DIP-VAE-I; the biased estimate, as disentanglement_lib's
  compute_covariance_z_mean), plus E[diag(exp(logvar(x)))] when `logvar_BxZ` is given
  (DIP-VAE-II: the covariance of q(z) = E_x q(z|x)). Under pmap the moments are pooled first."""
  e_mmT_ZxZ = batch_mean(mean_BxZ[:, :, None] * mean_BxZ[:, None, :], axis_name)
  e_m_Z = batch_mean(mean_BxZ, axis_name)
  cov_ZxZ = e_mmT_ZxZ - e_m_Z[:, None] * e_m_Z[None, :]
  if logvar_BxZ is not None:
    cov_ZxZ = cov_ZxZ + jnp.diag(batch_mean(jnp.exp(logvar_BxZ), axis_name))
  return cov_ZxZ


def dip_penalty(cov_ZxZ: jax.Array, lambda_od: jax.Array, lambda_d: jax.Array) -> jax.Array:
  """DIP-VAE's distance of a covariance from the identity (Kumar et al. 2018, eqs. 6-7):
  lambda_od sum_{i != j} Cov_ij^2 + lambda_d sum_i (Cov_ii - 1)^2; a scalar."""
  diag_Z = jnp.diagonal(cov_ZxZ)
  off_ZxZ = cov_ZxZ - jnp.diag(diag_Z)
  return lambda_od * jnp.sum(jnp.square(off_ZxZ)) + lambda_d * jnp.sum(jnp.square(diag_Z - 1.0))


def capacity(step: jax.Array, c_max: jax.Array, steps: jax.Array) -> jax.Array:
  """The annealed VAE's target KL C at a train step (Burgess et al. 2018): linear from 0 to c_max
  over `steps` steps, then c_max (disentanglement_lib's anneal); 0 steps is c_max at once."""
  ramp = jnp.minimum(1.0, step.astype(jnp.float32) / jnp.maximum(steps, 1.0))
  return c_max * jnp.where(steps > 0, ramp, 1.0)
