"""Normalizing flows for a VAE's posterior: each maps codes z [..., Z] (any leading shape, so K
posterior samples of B images at once) to f(z) and log |det df/dz| [...].

planar and radial (Rezende & Mohamed, 2015, eq. 10-14) take their parameters as arguments: the
flow VAE's encoder computes them per image (amortised, as in that paper), under the constraints of
its appendix A that keep each map invertible. IAFStep (Kingma et al., 2016) is a Linen module: a
MADE (Germain et al., 2015) of the code and the encoder's context h gives m and s, and the step
is the numerically stable update of the paper's algorithm 1.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def planar(z_NxZ: jax.Array, u_NxZ: jax.Array, w_NxZ: jax.Array,
           b_N: jax.Array) -> tuple[jax.Array, jax.Array]:
  """f(z) = z + u' tanh(w.z + b), log |det| = log |1 + u'.psi(z)|, psi(z) = tanh'(w.z + b) w,
  with u' = u + (m(w.u) - w.u) w / |w|^2, m(a) = -1 + softplus(a), so that w.u' >= -1 and f is
  invertible (appendix A.1). N stands for any leading shape."""
  wu_N = jnp.sum(w_NxZ * u_NxZ, axis=-1)
  # w = 0 is the identity (u' = u, psi = 0): the tiny term keeps 0/0 out of it.
  u_hat_NxZ = u_NxZ + ((-1 + jax.nn.softplus(wu_N) - wu_N)
                       / (jnp.sum(jnp.square(w_NxZ), axis=-1) + 1e-30))[..., None] * w_NxZ
  a_N = jnp.tanh(jnp.sum(w_NxZ * z_NxZ, axis=-1) + b_N)
  psi_NxZ = (1 - jnp.square(a_N))[..., None] * w_NxZ
  log_det_N = jnp.log(jnp.abs(1 + jnp.sum(u_hat_NxZ * psi_NxZ, axis=-1)))
  return z_NxZ + u_hat_NxZ * a_N[..., None], log_det_N


def radial(z_NxZ: jax.Array, z0_NxZ: jax.Array, alpha_raw_N: jax.Array,
           beta_raw_N: jax.Array) -> tuple[jax.Array, jax.Array]:
  """f(z) = z + beta h(alpha, r) (z - z0), h = 1 / (alpha + r), r = |z - z0|, with alpha =
  softplus(alpha_raw) > 0 and beta = -alpha + softplus(beta_raw) >= -alpha, so that f is
  invertible (appendix A.2); log |det| = (Z - 1) log(1 + beta h) + log(1 + beta h + beta h' r),
  h' = -1 / (alpha + r)^2."""
  alpha_N = jax.nn.softplus(alpha_raw_N)
  beta_N = -alpha_N + jax.nn.softplus(beta_raw_N)
  diff_NxZ = z_NxZ - z0_NxZ
  r_N = jnp.sqrt(jnp.sum(jnp.square(diff_NxZ), axis=-1))
  h_N = 1 / (alpha_N + r_N)
  bh_N = beta_N * h_N
  log_det_N = ((z_NxZ.shape[-1] - 1) * jnp.log1p(bh_N)
               + jnp.log1p(bh_N - beta_N * r_N * jnp.square(h_N)))
  return z_NxZ + bh_N[..., None] * diff_NxZ, log_det_N


def made_masks(latents: int, hidden: tuple[int, ...]) -> list[np.ndarray]:
  """MADE's masks [in, out] for inputs of degrees 1..Z in order, hidden units of degrees cycling
  through 1..Z-1, and outputs: a hidden unit of degree k sees inputs 1..k, output d sees hidden
  units of degree < d, so output d depends on inputs 1..d-1 only (Germain et al., 2015, eq. 12-13).
  The last mask is for each of the outputs' heads."""
  degrees = [np.arange(1, latents + 1)]
  for width in hidden:
    degrees.append(np.arange(width) % max(latents - 1, 1) + 1)
  masks = [(d_out[None, :] >= d_in[:, None]).astype(np.float32)
           for d_in, d_out in zip(degrees[:-1], degrees[1:])]
  masks.append((degrees[0][None, :] > degrees[-1][:, None]).astype(np.float32))
  return masks


class MaskedDense(nn.Module):
  """A dense layer whose kernel is multiplied by a fixed 0/1 mask [in, out]."""
  mask: np.ndarray
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x_NxI: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), self.mask.shape)
    bias = self.param("bias", nn.initializers.constant(self.bias_init), self.mask.shape[1:])
    y_NxO = x_NxI @ (kernel * jnp.asarray(self.mask, kernel.dtype))
    return y_NxO + bias.reshape((1,) * (y_NxO.ndim - 1) + bias.shape)


class MADE(nn.Module):
  """Two heads [..., Z] whose d-th outputs depend on the variables before d only (Germain et
  al., 2015), ELU hidden layers of widths `hidden`; an optional context h [..., hidden[0]]
  enters the first hidden layer, unmasked. `reverse` reverses the variables' order (outputs are
  returned in the inputs' order). `second_bias` initialises the second head's biases."""
  latents: int
  hidden: tuple[int, ...]
  reverse: bool = False
  second_bias: float = 0.0

  @nn.compact
  def __call__(self, z_NxZ: jax.Array,
               h_NxH: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    masks = made_masks(self.latents, self.hidden)
    a = z_NxZ[..., ::-1] if self.reverse else z_NxZ
    for i, mask in enumerate(masks[:-1]):
      a = MaskedDense(mask, name=f"hidden_{i}")(a)
      if i == 0 and h_NxH is not None:
        a = a + h_NxH
      a = nn.elu(a)
    first_NxZ = MaskedDense(masks[-1], name="first")(a)
    second_NxZ = MaskedDense(masks[-1], bias_init=self.second_bias, name="second")(a)
    if self.reverse:
      return first_NxZ[..., ::-1], second_NxZ[..., ::-1]
    return first_NxZ, second_NxZ


class IAFStep(nn.Module):
  """One step of inverse autoregressive flow: [m, s] = MADE(z, h), sigma = sigmoid(s),
  f(z) = sigma z + (1 - sigma) m, log |det| = sum log sigma (Kingma et al., 2016, algorithm 1).
  `reverse` reverses the variables' order (the paper reverses it between steps). s's biases
  start at 1, so sigma starts near 1 (the paper initialises s "sufficiently positive, close to
  +1 or +2")."""
  latents: int
  hidden: tuple[int, ...]
  reverse: bool = False

  @nn.compact
  def __call__(self, z_NxZ: jax.Array, h_NxH: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    m_NxZ, s_NxZ = MADE(self.latents, self.hidden, self.reverse, second_bias=1.0,
                        name="made")(z_NxZ, h_NxH)
    sigma_NxZ = jax.nn.sigmoid(s_NxZ)
    return (sigma_NxZ * z_NxZ + (1 - sigma_NxZ) * m_NxZ,
            jnp.sum(jax.nn.log_sigmoid(s_NxZ), axis=-1))
