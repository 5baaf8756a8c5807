"""The zoo's objectives: IWAE bound, denoising target, sparsity, KL warm-up, VQ gradients,
and the staged learning-rate schedule."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import configs
from aejax import likelihood
from aejax import losses
from aejax import hparams
from aejax import families
from aejax.families import shared
from aejax.families import vae as vae_family
from aejax import optimizers
from aejax import preprocess
from aejax import sampling
from aejax import train
from aejax import validation
from aejax.errors import UserError


def _vae(hidden=(64,), latents=8):
  config = configs.base()
  config.model.name, config.loss, config.input.binarize = "vae", "elbo", "dynamic"
  config.model.hidden, config.model.latents = hidden, latents
  model = families.create_model(config.model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jax.random.key(1))["params"]
  return config, model, params


def _binary(images_uint8, seed=0):
  return preprocess.binarize(preprocess.to_unit_interval(jnp.asarray(images_uint8)),
                             jax.random.key(seed), "dynamic")


# --- IWAE --------------------------------------------------------------------------------------

@pytest.mark.quick
def test_iwae_bound_with_one_sample_is_the_elbo_of_that_sample(mnist):
  _, model, params = _vae()
  x = _binary(mnist[2][:16])
  out = model.apply({"params": params}, x, jax.random.key(3))
  eps_1xBxZ = ((out["z"] - out["mean"]) * jnp.exp(-0.5 * out["logvar"]))[None]
  log_w_1xB = model.apply({"params": params}, (out["mean"], out["logvar"]), eps_1xBxZ, x,
                          method="log_weights")
  bound = losses.iwae_bound(log_w_1xB)
  # The single-sample ELBO of the same z, by hand: log p(x|z) + log p(z) - log q(z|x).
  z, m, lv = (np.asarray(out[k], np.float64) for k in ("z", "mean", "logvar"))
  p = 1 / (1 + np.exp(-np.asarray(out["logits"], np.float64).reshape(16, -1)))
  xn = np.asarray(x, np.float64).reshape(16, -1)
  log_px = (xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum(1)
  log_pz = (-0.5 * np.log(2 * np.pi) - 0.5 * z**2).sum(1)
  log_qz = (-0.5 * np.log(2 * np.pi) - 0.5 * lv - 0.5 * (z - m)**2 / np.exp(lv)).sum(1)
  np.testing.assert_allclose(bound, log_px + log_pz - log_qz, rtol=1e-5)
  np.testing.assert_allclose(-vae_family.elbo(model, out, x)["rec"], log_px, rtol=1e-5)


@pytest.mark.quick
def test_iwae_bound_is_stable_for_tiny_weights():
  log_w = jnp.array([[-10000.0, -3.0], [-10001.0, -2.0], [-10002.5, -50.0]])
  want = [np.log(np.mean(np.exp(np.float64(c) - c.max()))) + c.max() for c in np.asarray(
      log_w, np.float64).T]
  chex.assert_trees_all_close(losses.iwae_bound(log_w), jnp.array(want, jnp.float32),
                              rtol=1e-6)
  assert np.all(np.isfinite(losses.iwae_bound(log_w)))


def test_bound_rises_with_k_on_a_briefly_trained_vae(mnist):
  config, model, params = _vae()
  tx = optimizers.create_optimizer(config)
  state = train.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                           opt_state=tx.init(params))
  step = jax.jit(functools.partial(train.train_step, hp=hparams.of(config), model=model,
                                   tx=optimizers.for_runs(config), config=config))
  images = jnp.asarray(mnist[0][:200 * 100])
  for i in range(150):  # 150 steps of 100: enough for a posterior narrower than the prior.
    state, _ = step(state, images[i * 100:(i + 1) * 100], jax.random.key(i))
  x = _binary(mnist[2][:500])
  log_w = likelihood.importance_log_weights(model, state.params, x, x, jax.random.key(7), 200,
                                            50)
  chex.assert_shape(log_w, (200, 500))
  # Disjoint sample sets, so the comparison is not an artefact of nested subsets.
  bounds = [float(jnp.mean(losses.iwae_bound(log_w[a:b])))
            for a, b in ((0, 1), (1, 6), (6, 56), (56, 200))]  # k = 1, 5, 50, 144
  assert bounds[0] < bounds[1] < bounds[2] < bounds[3], bounds
  assert bounds[2] - bounds[0] > 1.0, bounds  # Nats, well above the Monte Carlo noise.


def test_the_estimate_does_not_depend_on_the_chunk_size(mnist):
  _, model, params = _vae()
  x = _binary(mnist[2][:300])
  one = likelihood.importance_log_weights(model, params, x, x, jax.random.key(1), 120, 120)
  chunked = likelihood.importance_log_weights(model, params, x, x, jax.random.key(1), 120, 50)
  chex.assert_shape(chunked, (120, 300))  # 3 chunks of 50, the last one trimmed.
  # Sample j of an example is the same draw whatever the chunk it is decoded in.
  np.testing.assert_allclose(chunked, one, rtol=1e-5, atol=1e-3)
  # With one key per example (analysis), example b's samples are its own: a sub-batch of the
  # keys gives its columns.
  keys_B = sampling.example_keys(jax.random.key(1), 0, 300)
  whole = likelihood.importance_log_weights(model, params, x, x, keys_B, 120, 120)
  part = likelihood.importance_log_weights(model, params, x[100:110], x[100:110],
                                           keys_B.key[100:110], 120, 7)
  np.testing.assert_allclose(part, whole[:, 100:110], rtol=1e-5, atol=1e-3)


def test_iwae_training_objective_and_eval_nll(mnist):
  config, model, params = _vae()
  config.loss, config.model.num_samples = "iwae", 10
  config.eval_num_samples, config.eval_sample_chunk = 30, 7
  x = jnp.asarray(mnist[2][:50])
  hp = hparams.of(config)
  train_m = train.per_example_metrics(params, x, jax.random.key(0), hp=hp, model=model,
                                      config=config, training=True, step=jnp.asarray(0))
  assert "nll" not in train_m  # The test NLL is for evaluation only.
  eval_m = train.per_example_metrics(params, x, jax.random.key(0), hp=hp, model=model,
                                     config=config, training=False)
  chex.assert_shape(eval_m["nll"], (50,))
  # The NLL does not depend on eval_sample_chunk (7 does not divide 30; 30 is one chunk).
  config.eval_sample_chunk = 30
  one_chunk = train.per_example_metrics(params, x, jax.random.key(0), hp=hp, model=model,
                                        config=config, training=False)
  np.testing.assert_allclose(eval_m["nll"], one_chunk["nll"], rtol=1e-5)


# --- Denoising ---------------------------------------------------------------------------------

@pytest.mark.quick
@pytest.mark.parametrize("mode,level", [("mask", 0.5), ("gaussian", 0.5)])
def test_denoising_loss_compares_the_corrupted_input_with_the_clean_image(mnist, monkeypatch,
                                                                          mode, level):
  config = configs.base()
  config.model.hidden, config.model.latents = (64,), 8
  config.input.corruption, config.input.noise_level = mode, level
  model = families.create_model(config.model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jax.random.key(1))["params"]
  seen = {}
  corrupt = preprocess.corrupt

  def recording_corrupt(x, rng, m, lv):
    seen["clean"], seen["input"] = x, corrupt(x, rng, m, lv)
    return seen["input"]

  monkeypatch.setattr(preprocess, "corrupt", recording_corrupt)
  x_uint8 = jnp.asarray(mnist[2][:32])
  got = train.per_example_metrics(params, x_uint8, jax.random.key(5), hp=hparams.of(config),
                                  model=model, config=config, training=False)
  clean = preprocess.to_unit_interval(x_uint8)
  chex.assert_trees_all_close(seen["clean"], clean)
  assert float(jnp.mean(jnp.abs(seen["input"] - clean))) > 0.05  # It was corrupted...
  recon = jax.nn.sigmoid(model.apply({"params": params}, seen["input"], None)["logits"])
  # ...the model saw the corrupted image, and the loss scores its output against the clean one.
  chex.assert_trees_all_close(got["loss"], losses.squared_error(recon, clean), rtol=1e-5)
  assert not np.allclose(got["loss"], losses.squared_error(recon, seen["input"]), rtol=1e-3)


@pytest.mark.quick
def test_corruptions():
  x = jax.random.uniform(jax.random.key(0), (64, 28, 28, 1)) + 0.1  # No zero pixels.
  masked = preprocess.corrupt(x, jax.random.key(1), "mask", 0.3)
  zeroed = float(jnp.mean(masked == 0))
  assert 0.28 < zeroed < 0.32, zeroed
  chex.assert_trees_all_close(jnp.where(masked == 0, x, masked), x)  # Kept pixels untouched.
  noisy = preprocess.corrupt(x, jax.random.key(1), "gaussian", 0.2)
  np.testing.assert_allclose(float(jnp.std(noisy - x)), 0.2, rtol=0.02)
  assert preprocess.corrupt(x, jax.random.key(1), "none", 0.5) is x


# --- Sparse AE and beta-VAE --------------------------------------------------------------------

@pytest.mark.quick
def test_sparsity_penalties_against_hand_values():
  a = jnp.array([[0.1, 0.5], [0.3, 0.5]])  # Mean activations 0.2 and 0.5.
  rho = 0.1
  kl = sum(rho * np.log(rho / r) + (1 - rho) * np.log((1 - rho) / (1 - r)) for r in (0.2, 0.5))
  chex.assert_trees_all_close(losses.kl_sparsity(a, rho), jnp.full(2, kl), rtol=1e-5)
  chex.assert_trees_all_close(losses.kl_sparsity(jnp.full((3, 4), rho), rho), jnp.zeros(3),
                              atol=1e-6)
  chex.assert_trees_all_close(losses.l1_penalty(jnp.array([[1.0, -2.0], [0.0, 0.5]])),
                              jnp.array([3.0, 0.5]))


@pytest.mark.quick
def test_sparse_ae_loss_adds_the_weighted_penalties(mnist):
  config = configs.base()
  config.model.hidden, config.model.latents = (64,), 16
  config.model.code_activation = "sigmoid"
  config.objective.l1_code, config.objective.sparsity_weight = 0.1, 2.0
  model = families.create_model(config.model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jax.random.key(1))["params"]
  m = train.per_example_metrics(params, jnp.asarray(mnist[2][:32]), jax.random.key(0),
                                hp=hparams.of(config), model=model, config=config,
                                training=False)
  chex.assert_trees_all_close(m["loss"], m["sq_err"] + 0.1 * m["l1_code"]
                              + 2.0 * m["kl_sparsity"], rtol=1e-6)
  assert float(m["kl_sparsity"][0]) > 0
  config.model.code_activation = "none"
  with pytest.raises(UserError, match="sigmoid"):
    validation.validate_config(config, 1)


@pytest.mark.quick
def test_kl_warmup_is_linear_and_evaluation_uses_the_final_beta(mnist):
  c = configs.base()
  c.objective.beta, c.objective.kl_warmup_steps = 4.0, 100
  hp = hparams.of(c)
  for step, want in ((0, 0.0), (25, 1.0), (100, 4.0), (1000, 4.0)):
    np.testing.assert_allclose(shared.kl_weight(jnp.asarray(step), hp, True), want, rtol=1e-6)
  # Evaluation: the final weight, at any step.
  np.testing.assert_allclose(shared.kl_weight(None, hp, False), 4.0)
  np.testing.assert_allclose(shared.kl_weight(jnp.asarray(0), hp, False), 4.0)
  config, model, params = _vae()
  config.objective.beta, config.objective.kl_warmup_steps = 4.0, 100
  x = jnp.asarray(mnist[2][:16])
  m = train.per_example_metrics(params, x, jax.random.key(0), hp=hparams.of(config),
                                model=model, config=config, training=True,
                                step=jnp.asarray(50))
  chex.assert_trees_all_close(m["loss"], m["rec"] + 2.0 * m["kl"], rtol=1e-6)
  chex.assert_trees_all_close(m["elbo"], -(m["rec"] + m["kl"]), rtol=1e-6)  # Unweighted.


# --- VQ-VAE ------------------------------------------------------------------------------------

def _norm(tree):
  return float(optax.tree.norm(tree))


@pytest.mark.quick
def test_vq_codebook_gets_gradients_only_from_the_codebook_term(mnist):
  config = configs.base()
  config.model.name, config.loss = "vqvae", "bce"
  config.model.hidden, config.model.latents = (64,), 16
  config.model.code_dim, config.model.codebook_size = 4, 16
  model = families.create_model(config.model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jax.random.key(1))["params"]
  x = preprocess.to_unit_interval(jnp.asarray(mnist[2][:64]))

  def term(name):
    def f(p):
      out = model.apply({"params": p}, x, None)
      if name == "rec":
        return jnp.mean(losses.bernoulli_nll(out["logits"], x))
      return jnp.mean(losses.vq_terms(out["z_e"], out["codes"])[name])
    return jax.grad(f)(params)

  rec, codebook, commitment = term("rec"), term("codebook"), term("commitment")
  book = lambda g: g["quantizer"]["codebook"]
  # The decoder's loss reaches the encoder (straight-through) and never the codebook.
  assert _norm(book(rec)) == 0 and _norm(rec["encoder"]) > 0 and _norm(rec["decoder"]) > 0
  # The codebook term moves only the codebook; the commitment term only the encoder.
  assert _norm(book(codebook)) > 0
  assert _norm(codebook["encoder"]) == 0 and _norm(codebook["decoder"]) == 0
  assert _norm(commitment["encoder"]) > 0
  assert _norm(book(commitment)) == 0 and _norm(commitment["decoder"]) == 0
  # Forward, z is exactly the chosen codes.
  out = model.apply({"params": params}, x, None)
  chex.assert_trees_all_close(out["z"], out["codes"].reshape(64, -1))


@pytest.mark.quick
def test_code_usage_perplexity():
  one = losses.code_usage(jnp.zeros((4, 3), jnp.int32), 8)
  chex.assert_trees_all_close(one["code_perplexity"], jnp.ones(4), rtol=1e-6)
  chex.assert_trees_all_close(one["codes_used"], jnp.full(4, 1 / 8))
  every = losses.code_usage(jnp.arange(16).reshape(4, 4) % 8, 8)  # Each code twice.
  chex.assert_trees_all_close(every["code_perplexity"], jnp.full(4, 8.0), rtol=1e-5)
  chex.assert_trees_all_close(every["codes_used"], jnp.ones(4))


# --- Learning-rate schedule --------------------------------------------------------------------

@pytest.mark.quick
def test_burda_schedule_has_the_paper_rates_and_length():
  config = configs.burda2015(num_samples=1)
  assert config.num_epochs == 3280
  spe = 3000  # 60000 images in batches of 20.
  lr = optimizers.learning_rate(config, spe)
  starts = np.cumsum([0] + [3**i for i in range(8)])  # First epoch of stage i: 0, 1, 4, 13...
  for i in range(8):
    for epoch in (starts[i], starts[i + 1] - 1):  # First and last epoch of the stage.
      np.testing.assert_allclose(lr(epoch * spe), 1e-3 * 10 ** (-i / 7), rtol=1e-5)
      np.testing.assert_allclose(lr(epoch * spe + spe - 1), 1e-3 * 10 ** (-i / 7), rtol=1e-5)
  assert config.opt.eps == 1e-4 and config.opt.b1 == 0.9 and config.opt.b2 == 0.999


@pytest.mark.quick
def test_cosine_schedule_has_the_closed_form_rates_and_pins_num_epochs():
  import json

  from aejax.run import rundir

  config = configs.base()
  config.opt.schedule, config.num_epochs, config.learning_rate = "cosine", 4, 2e-3
  lr = optimizers.learning_rate(config, steps_per_epoch=10)
  for step in (0, 7, 20, 33, 40):  # 0.5 lr (1 + cos(pi t / T)), T = 4 epochs x 10 steps.
    np.testing.assert_allclose(float(lr(step)), 1e-3 * (1 + np.cos(np.pi * step / 40)),
                               rtol=1e-5, atol=1e-9)
  saved = json.loads(config.to_json_best_effort())
  config.num_epochs = 5  # A longer run would decay more slowly: resuming must refuse it.
  assert rundir.config_drift(saved, config) == ["num_epochs: 4 -> 5"]
