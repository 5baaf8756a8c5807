"""Codes to decode into new images, for every family: how a restored run is sampled.

- `prior`: a family whose model has `sample` (vae, beta_tcvae, vamp, hvae, wae) draws its own
  prior.
- `ex_post_gmm`: a family with a deterministic code and no prior (ae and its sparse and denoising
  variants, rae) draws from a Gaussian mixture fitted to its train codes after training (full
  covariances, seeded; Ghosh et al. 2020's ex-post density estimation, 10 components by default,
  as pythae's).
- `ex_post_maf`: the same families, from a masked autoregressive flow fitted to the train codes
  (aejax/analysis/maf.py; Papamakarios et al. 2017), when asked for.
- `ex_post_two_stage`: the same families, from the second stage of the two-stage VAE (Dai & Wipf
  2019) fitted to the train codes (aejax/analysis/two_stage.py), when asked for.
- `ex_post_normal`: the same families, from N(0, I): the prior they were never trained with, a
  reference for the fitted densities (the question the two-stage VAE and the ex-post densities
  answer is how far below it they get).
- `vq_categorical`: a VQ-VAE draws each position of its code grid independently from the
  frequencies with which the train codes use each codebook entry there, and decodes the entries.
  An independent categorical, not an autoregressive prior (van den Oord et al. fit a PixelCNN):
  it reproduces each position's marginal, not the dependence between positions.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from aejax.analysis import maf
from aejax.analysis import two_stage
from aejax.errors import UserError

EX_POST_COMPONENTS = 10  # Ghosh et al. 2020 and pythae.
# --ex_post_sampler: how a family without a prior is sampled.
EX_POST = ("gmm", "maf", "two_stage", "normal")

PROTOCOLS = {
    "prior": "codes drawn from the model's own prior (its `sample`)",
    "ex_post_gmm": ("codes drawn from a Gaussian mixture of {components} components (full "
                    "covariances, scikit-learn, seeded) fitted to the codes of the train images "
                    "(Ghosh et al. 2020's ex-post density estimation)"),
    "ex_post_maf": ("codes drawn from a masked autoregressive flow ({layers} layers, MADEs of "
                    "{hidden} units; Papamakarios et al. 2017) fitted by maximum likelihood to "
                    "the standardised codes of the train images ({steps} Adam steps of {batch} "
                    "codes, seeded)"),
    "ex_post_two_stage": ("codes drawn from the second stage of the two-stage VAE (Dai & Wipf "
                          "2019: a VAE on the standardised train codes, as many latents as the "
                          "code has dimensions, MLPs of {hidden} ReLU units, a learned decoder "
                          "variance gamma; {steps} Adam steps of {batch} codes, seeded): "
                          "N(mu(u), gamma I) for u from N(0, I)"),
    "ex_post_normal": ("codes drawn from N(0, I), a prior the model was not trained with (a "
                       "reference for the fitted densities)"),
    "vq_categorical": ("each of the {positions} positions of the code grid drawn independently "
                       "from the frequencies of the {codebook} codebook entries at that position "
                       "among the codes of the train images (an independent categorical per "
                       "position, no autoregressive prior), the chosen entries decoded"),
}


@dataclasses.dataclass(frozen=True)
class Sampler:
  """`codes(n, seed)` -> [n, *code_shape] float32 codes to decode; `kind` a key of PROTOCOLS,
  `protocol` how the codes are drawn, in words."""
  kind: str
  protocol: str
  codes: Callable[[int, int], np.ndarray]


def kind_of(run, ex_post: str = "gmm") -> str:
  """How `run` (a Restored) is sampled: a key of PROTOCOLS. `ex_post` (one of EX_POST) chooses
  for a family without a prior; asked of another family, it is a UserError."""
  if ex_post not in EX_POST:
    raise UserError(f"--ex_post_sampler={ex_post!r} is none of {EX_POST}")
  if run.is_generative or run.config.model.name == "vqvae":
    if ex_post != "gmm":
      raise UserError(f"--ex_post_sampler={ex_post} samples a family without a prior (ae, "
                      f"rae); model {run.config.model.name!r} has its own sampler, so leave the "
                      f"flag out")
    return "prior" if run.is_generative else "vq_categorical"
  return f"ex_post_{ex_post}"


def for_run(run, codes_train_NxZ: np.ndarray, components: int = EX_POST_COMPONENTS,
            seed: int = 0, ex_post: str = "gmm") -> Sampler:
  """The sampler of a restored run, fitted to its train codes where the family needs that;
  components: of the ex-post mixture (0: a family without a prior has no mixture sampler);
  ex_post: one of EX_POST, for a family without a prior."""
  kind = kind_of(run, ex_post)
  if kind == "ex_post_normal":
    size = codes_train_NxZ.shape[1]
    return Sampler(kind, PROTOCOLS[kind], lambda n, s: np.asarray(
        jax.random.normal(jax.random.key(s), (n, size)), np.float32))
  if kind == "ex_post_maf":
    fitted = maf.fit(codes_train_NxZ, seed)
    return Sampler(kind, PROTOCOLS[kind].format(layers=maf.LAYERS, hidden="-".join(
        map(str, maf.HIDDEN)), steps=maf.STEPS, batch=maf.BATCH), fitted.sample)
  if kind == "ex_post_two_stage":
    fitted = two_stage.fit(codes_train_NxZ, seed)
    return Sampler(kind, PROTOCOLS[kind].format(hidden="-".join(map(str, two_stage.HIDDEN)),
                                                steps=two_stage.STEPS, batch=two_stage.BATCH),
                   fitted.sample)
  if kind == "prior":
    return Sampler(kind, PROTOCOLS[kind], run.prior_codes)
  if kind == "vq_categorical":
    codebook_KxD = np.asarray(run.params["quantizer"]["codebook"])
    fitted = VQCategorical.fit(codes_train_NxZ, codebook_KxD)
    return Sampler(kind, PROTOCOLS[kind].format(positions=fitted.probs_PxK.shape[0],
                                                codebook=len(codebook_KxD)), fitted.sample)
  if components < 1:
    raise UserError(f"model {run.config.model.name!r} has no prior and --ex_post_components="
                    f"{components} fits no mixture to its codes, so it has no sampler for the "
                    f"sample-quality metrics; pass --ex_post_components >= 1 (10 is Ghosh et "
                    f"al.'s) or leave out --sample_quality")
  if components > len(codes_train_NxZ):
    raise UserError(f"--ex_post_components={components} exceeds the {len(codes_train_NxZ)} "
                    f"train codes it is fitted to; pass fewer components")
  gmm = gaussian_mixture(codes_train_NxZ, components, seed)
  return Sampler(kind, PROTOCOLS[kind].format(components=components),
                 lambda n, s: gmm_sample(gmm, n, s))


def gaussian_mixture(codes_train_NxZ: np.ndarray, components: int, seed: int):
  """A Gaussian mixture (full covariances, seeded) fitted to the train codes (scikit-learn)."""
  from sklearn.mixture import GaussianMixture

  gmm = GaussianMixture(components, covariance_type="full", random_state=seed)
  return gmm.fit(np.asarray(codes_train_NxZ, np.float64))


def gmm_sample(gmm, n: int, seed: int) -> np.ndarray:
  """n codes [n, Z] from a fitted mixture, drawn from `seed` whatever draws came before, in
  random order: scikit-learn returns them grouped by component, so a prefix (a figure's first
  64) would show one component only."""
  gmm.set_params(random_state=seed)
  z_NxZ = gmm.sample(n)[0]
  return z_NxZ[np.random.default_rng(seed).permutation(n)].astype(np.float32)


@dataclasses.dataclass(frozen=True)
class VQCategorical:
  """Independent categoricals over the codebook, one per position of a VQ-VAE's code grid."""
  probs_PxK: np.ndarray  # Train frequency of entry k at position p.
  codebook_KxD: np.ndarray

  @classmethod
  def fit(cls, codes_NxL: np.ndarray, codebook_KxD: np.ndarray) -> "VQCategorical":
    idx_NxP = nearest_entries(codes_NxL, codebook_KxD)
    k = len(codebook_KxD)
    counts_PxK = np.stack([np.bincount(col, minlength=k) for col in idx_NxP.T])
    return cls(counts_PxK / len(idx_NxP), np.asarray(codebook_KxD, np.float32))

  def indices(self, n: int, seed: int) -> np.ndarray:
    """[n, P] entries, position p's drawn from probs_PxK[p]."""
    # log 0 = -inf: an entry a position never used is never drawn there.
    with np.errstate(divide="ignore"):
      logits_PxK = jnp.asarray(np.log(self.probs_PxK), jnp.float32)
    return np.asarray(jax.random.categorical(jax.random.key(seed), logits_PxK,
                                             shape=(n, len(self.probs_PxK))))

  def sample(self, n: int, seed: int) -> np.ndarray:
    """n codes [n, P * D]: the drawn entries, as the quantiser's output lays them out."""
    return self.codebook_KxD[self.indices(n, seed)].reshape(n, -1)


def nearest_entries(codes_NxL: np.ndarray, codebook_KxD: np.ndarray) -> np.ndarray:
  """[N, P]: which codebook entry each D-vector of the quantised codes is (its nearest: the
  straight-through output z_e + (e - z_e) equals e only up to rounding)."""
  d = codebook_KxD.shape[1]
  z_NxPxD = np.asarray(codes_NxL, np.float32).reshape(len(codes_NxL), -1, d)
  sq_K = np.sum(np.square(codebook_KxD), -1)
  # One position at a time: all of them at once is [N, P, K], gigabytes for a train split.
  return np.stack([np.argmin(sq_K - 2 * z_NxD @ codebook_KxD.T, axis=-1)
                   for z_NxD in z_NxPxD.transpose(1, 0, 2)], axis=1)
