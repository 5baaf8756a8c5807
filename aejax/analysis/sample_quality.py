"""Sample quality: generated feature vectors y_MxD against real ones x_NxD, four ways.

Each metric follows its reference code, constants and comparisons included:

- Fréchet distance (Heusel et al. 2017): ||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 sqrtm(S_x S_y)) of
  the two sets' means and covariances (ddof 1), in float64 with scipy.linalg.sqrtm. As in
  mseitzer/pytorch-fid, src/pytorch_fid/fid_score.py (calculate_frechet_distance): a non-finite
  square root is taken again with 1e-6 added to both covariances' diagonals, and an imaginary
  part is dropped when the diagonal's is within 1e-3 of 0 (otherwise an error).
- KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel k(a, b) = (a.b/D + 1)^3,
  mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j), on 100 subsets of
  min(N, M, 1000) real and as many generated vectors, each drawn without replacement; the mean
  and the standard deviation (ddof 0) over subsets. As in toshas/torch-fidelity,
  torch_fidelity/metric_kid.py (mmd2, kernel_poly, kid_features_to_metric) and
  GaParmar/clean-fid, cleanfid/fid.py (kernel_distance: the subset size at most 1,000).
- Improved precision and recall (Kynkäänniemi et al. 2019, k = 3): a set's manifold is the union
  of balls around its points, each of radius the distance to its k-th nearest neighbour other than
  itself (the (k+1)-th smallest distance, the point's own 0 included). Precision is the fraction of
  generated points inside the real manifold, recall the fraction of real points inside the
  generated one; inside means distance <= radius. As in kynkaat/improved-precision-and-recall-
  metric, precision_recall.py (ManifoldEstimator: np.partition at index k of squared distances,
  `<=`).
- Density and coverage (Naeem et al. 2020, k = 5): with the real points' k-NN radii r_i as above,
  density = 1/(k M) sum_j #{i: d(x_i, y_j) < r_i} and coverage = the fraction of real points
  whose nearest generated point is closer than r_i (strict `<`). As in
  clovaai/generative-evaluation-prdc, prdc/prdc.py (compute_prdc).

Distances and radii run under jit on the default device, a [chunk, N] block of pairwise distances
at a time (at most _BLOCK_ELEMENTS of them) in one scanned program. They are squared Euclidean
distances (the order of the distances, as Kynkäänniemi et al.'s code compares them) from
float32 features centred on the real mean, which leaves the distances unchanged but keeps
|a|^2 - 2 a.b + |b|^2 from cancelling away the small ones.
"""

import functools
import warnings

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from aejax.errors import UserError

PR_K = 3
DC_K = 5
KID_SUBSETS = 100
KID_MAX_SUBSET = 1000
FD_EPS = 1e-6
# Pairwise distances held at once: a [chunk, N] block of 2^24 float32 is 64 MiB.
_BLOCK_ELEMENTS = 1 << 24
# Matrix products in full float32: by default GPUs and TPUs may round the inputs to TF32 or bf16
# (10 or 7 mantissa bits), an error in a.b of order 1e-3 |a||b|, which can change who is whose
# k-th neighbour.
_HIGHEST = jax.lax.Precision.HIGHEST


def checked_features(real_NxD, fake_MxD, what: str, min_real: int, min_fake: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """The two sets as float64 arrays, or a UserError naming what `what` needs of them."""
  real_NxD, fake_MxD = np.asarray(real_NxD, np.float64), np.asarray(fake_MxD, np.float64)
  if real_NxD.ndim != 2 or fake_MxD.ndim != 2:
    raise UserError(f"{what}: features must be [samples, dimensions] arrays, got real of shape "
                    f"{real_NxD.shape} and generated of shape {fake_MxD.shape}; flatten each "
                    f"sample's features into one row")
  if real_NxD.shape[1] != fake_MxD.shape[1]:
    raise UserError(f"{what}: real features have {real_NxD.shape[1]} dimensions and generated "
                    f"ones {fake_MxD.shape[1]}; compute both with the same feature network")
  if len(real_NxD) < min_real or len(fake_MxD) < min_fake:
    raise UserError(f"{what} needs at least {min_real} real and {min_fake} generated samples, "
                    f"got {len(real_NxD)} and {len(fake_MxD)}; pass more samples")
  for name, x in (("real", real_NxD), ("generated", fake_MxD)):
    if not np.isfinite(x).all():
      raise UserError(f"{what}: the {name} features hold NaN or infinite values; check the "
                      f"images they were computed from")
  return real_NxD, fake_MxD


# -- Fréchet distance ----------------------------------------------------------------------------

def frechet_distance(real_NxD, fake_MxD, eps: float = FD_EPS) -> float:
  """The Fréchet distance between Gaussians fitted to the two sets (float64; pytorch-fid's
  calculate_frechet_distance, see the module docstring)."""
  real_NxD, fake_MxD = checked_features(real_NxD, fake_MxD, "the Fréchet distance", 2, 2)
  mu1_D, mu2_D = real_NxD.mean(axis=0), fake_MxD.mean(axis=0)
  sigma1_DxD = np.atleast_2d(np.cov(real_NxD, rowvar=False))
  sigma2_DxD = np.atleast_2d(np.cov(fake_MxD, rowvar=False))
  diff_D = mu1_D - mu2_D
  covmean_DxD = _sqrtm(sigma1_DxD @ sigma2_DxD)
  if not np.isfinite(covmean_DxD).all():
    # The product is singular (e.g. fewer samples than dimensions): pytorch-fid's offset.
    logging.warning("The Fréchet distance's covariance product is singular: adding %g to the "
                    "diagonal of both covariances (as pytorch-fid does)", eps)
    offset_DxD = np.eye(len(sigma1_DxD)) * eps
    covmean_DxD = _sqrtm((sigma1_DxD + offset_DxD) @ (sigma2_DxD + offset_DxD))
  if np.iscomplexobj(covmean_DxD):
    if not np.allclose(np.diagonal(covmean_DxD).imag, 0, atol=1e-3):
      raise UserError(
          f"the Fréchet distance's matrix square root has an imaginary part of "
          f"{np.max(np.abs(covmean_DxD.imag)):.3g}: the covariances of {len(real_NxD)} real and "
          f"{len(fake_MxD)} generated samples in {len(diff_D)} dimensions are too degenerate; "
          f"pass more samples than dimensions")
    covmean_DxD = covmean_DxD.real
  return float(diff_D @ diff_D + np.trace(sigma1_DxD) + np.trace(sigma2_DxD)
               - 2 * np.trace(covmean_DxD))


def _sqrtm(a_DxD: np.ndarray) -> np.ndarray:
  # scipy warns of a singular or ill-conditioned matrix; the finiteness check above decides,
  # as pytorch-fid's does (it calls sqrtm with disp=False, which does not print).
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    return scipy.linalg.sqrtm(a_DxD)


# -- KID -----------------------------------------------------------------------------------------

def kid(real_NxD, fake_MxD, seed: int = 0, subsets: int = KID_SUBSETS,
        max_subset: int = KID_MAX_SUBSET) -> tuple[float, float]:
  """(mean, std) over `subsets` random subsets of the unbiased MMD^2 with the cubic polynomial
  kernel (torch-fidelity's and clean-fid's KID, see the module docstring); the subsets are drawn
  from jax.random.key(seed)."""
  real_NxD, fake_MxD = checked_features(real_NxD, fake_MxD, "KID", 2, 2)
  size = min(len(real_NxD), len(fake_MxD), max_subset)
  sums_Sx3xm, diags_Sx2xm = _kid_kernel_sums(
      jax.random.key(seed), jnp.asarray(real_NxD, jnp.float32), jnp.asarray(fake_MxD, jnp.float32),
      subsets=subsets, size=size)
  # Each kernel's rows are summed on the device (1,000 terms each); the rest in float64, since
  # MMD^2 is a small difference of sums of a million terms near 1.
  sums_Sx3 = np.asarray(sums_Sx3xm, np.float64).sum(axis=2)
  diags_Sx2 = np.asarray(diags_Sx2xm, np.float64).sum(axis=2)
  within_S = (sums_Sx3[:, 0] - diags_Sx2[:, 0]) + (sums_Sx3[:, 1] - diags_Sx2[:, 1])
  mmd2_S = within_S / (size * (size - 1)) - 2 * sums_Sx3[:, 2] / (size * size)
  return float(mmd2_S.mean()), float(mmd2_S.std())


@functools.partial(jax.jit, static_argnames=("subsets", "size"))
def _kid_kernel_sums(key, real_NxD, fake_MxD, subsets: int, size: int):
  """Per subset: the row sums of K_xx, K_yy, K_xy [subsets, 3, size] and the diagonals of K_xx,
  K_yy [subsets, 2, size]."""
  d = real_NxD.shape[1]

  def kernel(a_mxD, b_mxD):
    return (jnp.matmul(a_mxD, b_mxD.T, precision=_HIGHEST) / d + 1) ** 3

  def one_subset(i):
    key_fake, key_real = jax.random.split(jax.random.fold_in(key, i))
    y_mxD = fake_MxD[jax.random.choice(key_fake, fake_MxD.shape[0], (size,), replace=False)]
    x_mxD = real_NxD[jax.random.choice(key_real, real_NxD.shape[0], (size,), replace=False)]
    k_xx, k_yy, k_xy = kernel(x_mxD, x_mxD), kernel(y_mxD, y_mxD), kernel(x_mxD, y_mxD)
    sums_3xm = jnp.stack([k_xx.sum(axis=1), k_yy.sum(axis=1), k_xy.sum(axis=1)])
    return sums_3xm, jnp.stack([jnp.diagonal(k_xx), jnp.diagonal(k_yy)])

  return jax.lax.map(one_subset, jnp.arange(subsets))


# -- Precision, recall, density, coverage --------------------------------------------------------

def prdc(real_NxD, fake_MxD, pr_k: int = PR_K, dc_k: int = DC_K) -> dict[str, float]:
  """{'precision', 'recall'} (Kynkäänniemi et al., k = pr_k) and {'density', 'coverage'} (Naeem
  et al., k = dc_k), see the module docstring. Three passes over pairwise distances: real-real
  (both radii), generated-generated, and generated-real (all four counts)."""
  real_NxD, fake_MxD = checked_features(
      real_NxD, fake_MxD, f"precision and recall (k = {pr_k}), density and coverage (k = {dc_k})",
      max(pr_k, dc_k) + 1, pr_k + 1)
  mean_D = real_NxD.mean(axis=0)
  real_NxD = jnp.asarray(real_NxD - mean_D, jnp.float32)
  fake_MxD = jnp.asarray(fake_MxD - mean_D, jnp.float32)
  real_radii_Nx2 = knn_sq_radii(real_NxD, (pr_k, dc_k))
  fake_radii_Mx1 = knn_sq_radii(fake_MxD, (pr_k,))
  n, m = len(real_NxD), len(fake_MxD)
  precise_M, in_balls_M, recalled_N, nearest_N = _cross_counts(
      real_NxD, fake_MxD, real_radii_Nx2, fake_radii_Mx1[:, 0], chunk=_chunk(m, n))
  covered_N = np.asarray(nearest_N) < real_radii_Nx2[:, 1]
  return {"precision": float(np.mean(np.asarray(precise_M))),
          "recall": float(np.mean(np.asarray(recalled_N))),
          "density": float(np.sum(np.asarray(in_balls_M, np.float64)) / (dc_k * m)),
          "coverage": float(np.mean(covered_N))}


def _chunk(rows: int, cols: int) -> int:
  return max(1, min(rows, _BLOCK_ELEMENTS // cols))


def _blocks(x_NxD, chunk: int, fill=0.0):
  """x padded with `fill` to a multiple of `chunk` rows, as [blocks, chunk, ...]."""
  pad = -len(x_NxD) % chunk
  padded = jnp.pad(x_NxD, [(0, pad)] + [(0, 0)] * (x_NxD.ndim - 1), constant_values=fill)
  return padded.reshape(-1, chunk, *x_NxD.shape[1:])


def _sq_distances(a_BxD, b_NxD, b_sq_N):
  a_sq_B = jnp.sum(jnp.square(a_BxD), axis=1)
  cross_BxN = jnp.matmul(a_BxD, b_NxD.T, precision=_HIGHEST)
  # (|a|^2 + |b|^2) first: that sum rounds the same either way round, so only the matrix
  # product's rounding can tell d(a, b) from d(b, a), and a point's distance to a neighbour
  # keeps tying the radius that distance defines (density 1 for two copies of one set).
  return jnp.maximum((a_sq_B[:, None] + b_sq_N[None, :]) - 2 * cross_BxN, 0.0)


def knn_sq_radii(x_NxD, ks: tuple[int, ...]) -> np.ndarray:
  """[N, len(ks)]: each point's squared distance to its k-th nearest neighbour other than itself,
  i.e. the (k+1)-th smallest of its distances to all N points, its own included."""
  return np.asarray(_knn_sq_radii(x_NxD, ks=tuple(ks), chunk=_chunk(len(x_NxD), len(x_NxD))))


@functools.partial(jax.jit, static_argnames=("ks", "chunk"))
def _knn_sq_radii(x_NxD, ks: tuple[int, ...], chunk: int):
  x_sq_N = jnp.sum(jnp.square(x_NxD), axis=1)

  def radii(_, rows_BxD):
    d2_BxN = _sq_distances(rows_BxD, x_NxD, x_sq_N)
    smallest_BxK = -jax.lax.top_k(-d2_BxN, max(ks) + 1)[0]  # ascending
    return None, smallest_BxK[:, jnp.asarray(ks)]

  _, radii_CxBxK = jax.lax.scan(radii, None, _blocks(x_NxD, chunk))
  return radii_CxBxK.reshape(-1, len(ks))[:len(x_NxD)]


@functools.partial(jax.jit, static_argnames=("chunk",))
def _cross_counts(real_NxD, fake_MxD, real_radii_Nx2, fake_radii_M, chunk: int):
  """Over blocks of generated points: whether each is in the real manifold (precision), how many
  real balls hold it (density), and, carried across blocks, whether each real point is in the
  generated manifold (recall) and its squared distance to the nearest generated point."""
  real_sq_N = jnp.sum(jnp.square(real_NxD), axis=1)
  pr_radii_N, dc_radii_N = real_radii_Nx2[:, 0], real_radii_Nx2[:, 1]
  valid_CxB = _blocks(jnp.ones(len(fake_MxD), bool), chunk, fill=False)

  def block(carry, xs):
    recalled_N, nearest_N = carry
    rows_BxD, radii_B, valid_B = xs
    # Padding rows are infinitely far from every real point.
    d2_BxN = jnp.where(valid_B[:, None], _sq_distances(rows_BxD, real_NxD, real_sq_N), jnp.inf)
    precise_B = jnp.any(d2_BxN <= pr_radii_N[None, :], axis=1)
    in_balls_B = jnp.sum(d2_BxN < dc_radii_N[None, :], axis=1)
    recalled_N = recalled_N | jnp.any(d2_BxN <= radii_B[:, None], axis=0)
    nearest_N = jnp.minimum(nearest_N, jnp.min(d2_BxN, axis=0))
    return (recalled_N, nearest_N), (precise_B, in_balls_B)

  n = len(real_NxD)
  init = (jnp.zeros(n, bool), jnp.full(n, jnp.inf, real_NxD.dtype))
  (recalled_N, nearest_N), (precise_CxB, in_balls_CxB) = jax.lax.scan(
      block, init, (_blocks(fake_MxD, chunk), _blocks(fake_radii_M, chunk), valid_CxB))
  m = len(fake_MxD)
  return precise_CxB.reshape(-1)[:m], in_balls_CxB.reshape(-1)[:m], recalled_N, nearest_N


# -- All of them ---------------------------------------------------------------------------------

def sample_quality(real_NxD, fake_MxD, seed: int = 0) -> dict[str, float]:
  """{'fd', 'kid', 'kid_std', 'precision', 'recall', 'density', 'coverage'} of the generated
  features against the real ones, each with its reference constants."""
  kid_mean, kid_std = kid(real_NxD, fake_MxD, seed=seed)
  return {"fd": frechet_distance(real_NxD, fake_MxD), "kid": kid_mean, "kid_std": kid_std,
          **prdc(real_NxD, fake_MxD)}
