"""The loop a JAX user writes by hand for a VAE: aejax.bench's 'peer', the speed to match.

The same network (the family's `encode` and `decode`) and the same objective as aejax's VAE
with the ELBO (dynamic binarisation, reparameterised sample, Bernoulli decoder, analytic KL),
Adam at the config's constant rate, the images on the device, one `lax.scan` over an epoch's
steps with an on-device permutation (or a host loop over one compiled step, where aejax runs one:
a conv model on CPU): one binarisation draw and one posterior draw per step, of the whole
batch's shape. None of aejax's machinery (metrics, hyperparameter arrays, streams,
meshes, checkpoints) is in it, so aejax's device loop over this loop's speed is what aejax's
structure costs.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aejax.errors import UserError


def check(config: ml_collections.ConfigDict) -> None:
  """The configs the loop reproduces: a VAE on the ELBO, dynamically binarised, Adam."""
  opt = config.opt
  if (config.model.name, config.loss, config.input.binarize) != ("vae", "elbo", "dynamic") or (
      opt.name, opt.schedule, opt.grad_clip_norm) != ("adam", "constant", 0) or (
      config.input.corruption != "none"):
    raise UserError("--modes=peer times a VAE on the ELBO with dynamic binarisation and Adam at "
                    "a constant rate (experiments/vae.py, conv_vae.py); drop 'peer' for this "
                    "experiment")


def loss(model, params, x_uint8: jax.Array, key: jax.Array) -> jax.Array:
  """The batch's mean negative ELBO in nats."""
  key_bin, key_eps = jax.random.split(key)
  p = x_uint8.astype(jnp.float32) / 255.0
  x = (jax.random.uniform(key_bin, p.shape) < p).astype(jnp.float32)
  mean, logvar = model.apply({"params": params}, x, method="encode")
  z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key_eps, mean.shape)
  logits = model.apply({"params": params}, z, method="decode")
  rec = optax.sigmoid_binary_cross_entropy(logits, x).reshape(x.shape[0], -1).sum(-1)
  kl = 0.5 * jnp.sum(jnp.exp(logvar) + mean ** 2 - 1.0 - logvar, axis=-1)
  return jnp.mean(rec + kl)


def make_epoch(model, config: ml_collections.ConfigDict, images_NxHxWxC: jax.Array, *,
               batch_size: int, steps_per_epoch: int, loop: str = "scan"):
  """(init(key) -> (params, opt_state), compile(params, opt_state, key) -> epoch), where
  epoch(params, opt_state, key) -> (params, opt_state, mean loss) runs one epoch's steps as one
  `lax.scan` (loop 'scan') or from a Python loop over one compiled step (loop 'host': how aejax
  runs a conv model's steps on CPU, aejax/loops.py)."""
  tx = optax.adam(config.learning_rate, b1=config.opt.b1, b2=config.opt.b2, eps=config.opt.eps)
  num_images = images_NxHxWxC.shape[0]

  def step(carry, i, images):
    params, opt_state, perm, key = carry
    idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
    value, grads = jax.value_and_grad(loss, argnums=1)(model, params, images[idx],
                                                       jax.random.fold_in(key, i))
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, perm, key), value

  def order(key):
    key_perm, key_steps = jax.random.split(key)
    return jax.random.permutation(key_perm, num_images), key_steps

  def scanned(params, opt_state, key, images):
    perm, key_steps = order(key)
    (params, opt_state, _, _), values = jax.lax.scan(
        lambda carry, i: step(carry, i, images), (params, opt_state, perm, key_steps),
        jnp.arange(steps_per_epoch))
    return params, opt_state, jnp.mean(values)

  def compile_epoch(params, opt_state, key):
    if loop == "scan":
      epoch = jax.jit(scanned).lower(params, opt_state, key, images_NxHxWxC).compile()
      return lambda params, opt_state, key: epoch(params, opt_state, key, images_NxHxWxC)
    order_fn = jax.jit(order).lower(key).compile()
    perm, key_steps = order_fn(key)
    step_fn = jax.jit(step, donate_argnums=0).lower(
        (params, opt_state, perm, key_steps), jnp.int32(0), images_NxHxWxC).compile()

    def host(params, opt_state, key):
      carry = (params, opt_state, *order_fn(key))
      values = []
      for i in range(steps_per_epoch):
        carry, value = step_fn(carry, jnp.int32(i), images_NxHxWxC)
        values.append(value)
      return carry[0], carry[1], jnp.mean(jnp.stack(values))

    return host

  @jax.jit
  def init(key):
    x = jnp.zeros((batch_size, *images_NxHxWxC.shape[1:]), jnp.float32)
    params = model.init(key, x, jax.random.key(0))["params"]
    return params, tx.init(params)

  return init, compile_epoch
