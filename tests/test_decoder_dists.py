"""The decoder distributions p(x|z) against scipy, the one NLL estimator under each, bits per
dimension by hand, and a real MNIST run with the discretised logistic decoder."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

from aejax import configs
from aejax import decoder_dists
from aejax import families
from aejax import hparams
from aejax import likelihood
from aejax import losses
from aejax import objectives
from aejax import sampling
from aejax import validation
from aejax.analysis import restored
from aejax.errors import UserError
from aejax.families import shared
from aejax.run import rundir
from conftest import posterior_streams, run_aejax

LEVELS = np.arange(256) / 255.0


def _scipy_log_discretized_logistic(x, loc, scale):
  """log P(x) of the logistic discretised to the 256 levels of [0, 1], from scipy in float64:
  the log mass of [l, u] = [x - 1/510, x + 1/510], the end bins taking the tails. The mass is
  taken from the cdf left of the location and from the survival function right of it, each
  in log space, so a pixel far from the location keeps its (tiny) mass."""
  dist = stats.logistic(loc=loc, scale=scale)
  lower, upper = x - 0.5 / 255, x + 0.5 / 255
  with np.errstate(divide="ignore"):  # log(0) in the end bins' branch that where() drops.
    left = dist.logcdf(upper) + np.log1p(-np.exp(dist.logcdf(lower) - dist.logcdf(upper)))
    right = dist.logsf(lower) + np.log1p(-np.exp(dist.logsf(upper) - dist.logsf(lower)))
  inside = np.where(x < loc, left, right)
  return np.where(x <= 0.0, dist.logcdf(upper), np.where(x >= 1.0, dist.logsf(lower), inside))


@pytest.mark.quick
def test_gaussian_log_prob_against_scipy_with_a_fixed_and_a_learned_std():
  rng = np.random.default_rng(0)
  x_BxHxWxC = rng.uniform(0, 1, (2, 2, 3, 3)).astype(np.float32)
  mean = rng.normal(0.5, 0.3, x_BxHxWxC.shape).astype(np.float32)
  fixed = decoder_dists.DecoderDist("gaussian", std=0.3)
  want = stats.norm.logpdf(x_BxHxWxC, mean, 0.3).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(fixed.log_prob(jnp.asarray(mean), x_BxHxWxC), want, rtol=1e-5)
  # Learned: the decoder's channels are the 3 means, then the 3 log-stds, of each pixel; a
  # log-std below MIN_LOG_SCALE scores as MIN_LOG_SCALE.
  log_std = rng.uniform(-2, 0, x_BxHxWxC.shape).astype(np.float32)
  log_std[0, 0, 0, 0] = -9.0
  std = np.exp(np.maximum(log_std.astype(np.float64), decoder_dists.MIN_LOG_SCALE))
  learned = decoder_dists.DecoderDist("gaussian")
  assert learned.outputs_per_channel == 2 and fixed.outputs_per_channel == 1
  out = jnp.asarray(np.concatenate([mean, log_std], axis=-1))
  want = stats.norm.logpdf(x_BxHxWxC, mean, std).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(learned.log_prob(out, x_BxHxWxC), want, rtol=1e-5)
  # K decodings of each image score against that image: [K, B].
  out_KxB = jnp.stack([out, out[::-1]])
  np.testing.assert_allclose(learned.log_prob(out_KxB, x_BxHxWxC)[1, 0],
                             stats.norm.logpdf(x_BxHxWxC[0], mean[1], std[1]).sum(), rtol=1e-5)


@pytest.mark.quick
def test_discretized_logistic_against_scipy_at_the_edges_the_centre_and_the_tails():
  # Pixels on the 8-bit grid: both end bins, the middle, and locations far from the pixel.
  x = np.array([0.0, 1.0, 128 / 255, 3 / 255, 250 / 255, 0.0, 1.0, 40 / 255])
  loc = np.array([0.1, 0.7, 0.5, 0.02, 0.9, 0.6, 0.3, 0.8])
  log_scale = np.log([0.05, 0.2, 0.01, 0.003, 0.1, 0.02, 0.04, 0.3])
  got = losses.discretized_logistic_log_prob(jnp.asarray(x, jnp.float32),
                                             jnp.asarray(loc, jnp.float32),
                                             jnp.asarray(log_scale, jnp.float32))
  want = _scipy_log_discretized_logistic(x, loc, np.exp(log_scale))
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)
  # A pixel 68 scales from the location: the difference of two sigmoids rounds to 0 in float32,
  # but the bin's mass is still there: by hand, 1 - sigmoid(t) = e^-t / (1 + e^-t) ~ e^-t, so
  # P = e^-(z - d) - e^-(z + d), z = (x - loc) / scale, d = half the bin over the scale.
  far = losses.discretized_logistic_log_prob(jnp.float32(200 / 255), jnp.float32(0.1),
                                             jnp.log(jnp.float32(0.01)))
  z, d = (200 / 255 - 0.1) / 0.01, 0.5 / 255 / 0.01
  np.testing.assert_allclose(far, np.log(np.exp(-(z - d)) - np.exp(-(z + d))), rtol=1e-4)
  # A probability: it sums to 1 over the 256 levels, wherever the location and whatever the scale.
  for loc_, scale in ((0.5, 0.1), (-0.3, 0.05), (0.999, 0.002)):
    p = jnp.exp(losses.discretized_logistic_log_prob(jnp.asarray(LEVELS, jnp.float32),
                                                     jnp.float32(loc_), jnp.log(scale)))
    np.testing.assert_allclose(float(jnp.sum(p)), 1.0, rtol=1e-4)


@pytest.mark.quick
def test_logistic_decoder_reads_locations_then_log_scales_and_shows_the_location():
  rng = np.random.default_rng(1)
  x = (rng.integers(0, 256, (3, 2, 2, 3)) / 255).astype(np.float32)
  loc = rng.uniform(-0.2, 1.2, x.shape).astype(np.float32)
  log_scale = rng.uniform(-4, -1, x.shape).astype(np.float32)
  dist = decoder_dists.DecoderDist("logistic")
  out = jnp.asarray(np.concatenate([loc, log_scale], axis=-1))
  want = _scipy_log_discretized_logistic(x, loc, np.exp(log_scale)).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(dist.log_prob(out, x), want, rtol=1e-4)
  np.testing.assert_allclose(dist.mean(out), np.clip(loc, 0, 1))
  np.testing.assert_allclose(decoder_dists.DecoderDist().mean(jnp.zeros((1, 2, 2, 1))), 0.5)


@pytest.mark.quick
def test_a_logistic_mixture_against_scipy():
  # Two images of 2 x 1 pixels with 2 channels, a mixture of 3 per channel; the decoder's
  # channels are 3 x 2 weight logits, then 3 x 2 locations, then 3 x 2 log-scales.
  rng = np.random.default_rng(2)
  x = (rng.integers(0, 256, (2, 2, 1, 2)) / 255).astype(np.float32)
  x[0, 0, 0] = (0.0, 1.0)  # Both end bins.
  logits, loc, log_scale = (rng.normal(m, s, (2, 2, 1, 3, 2)).astype(np.float32)
                            for m, s in ((0, 1), (0.5, 0.4), (-3, 0.5)))
  dist = decoder_dists.DecoderDist("logistic", components=3)
  assert dist.outputs_per_channel == 9
  out = jnp.asarray(np.concatenate([v.reshape(2, 2, 1, 6) for v in (logits, loc, log_scale)],
                                   axis=-1))
  weights = np.exp(logits) / np.exp(logits).sum(axis=3, keepdims=True)
  p = np.exp(_scipy_log_discretized_logistic(x[..., None, :], loc, np.exp(log_scale)))
  want = np.log((weights * p).sum(axis=3)).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(dist.log_prob(out, x), want, rtol=1e-5)
  np.testing.assert_allclose(dist.mean(out), (weights * np.clip(loc, 0, 1)).sum(axis=3),
                             rtol=1e-5)


@pytest.mark.quick
def test_bits_per_dim_by_hand():
  # 100 nats for a 28 x 28 x 1 image: 100 / (784 x 0.693147) = 100 / 543.427 = 0.184017 bits.
  np.testing.assert_allclose(losses.bits_per_dim(jnp.float32(100.0), 784), 0.184017, rtol=1e-5)
  # A 32 x 32 x 3 image at 6000 nats: 6000 / (3072 x 0.693147) = 6000 / 2129.35 = 2.81777.
  np.testing.assert_allclose(losses.bits_per_dim(jnp.float32(6000.0), 3072), 2.81777, rtol=1e-5)


def _linear_gaussian_vae(decoder_std):
  """A VAE whose decoder is x = W z + b + sigma noise (no hidden layer) and whose encoder gives
  the exact posterior: W's columns are orthogonal, so the posterior covariance
  (I + W'W / sigma^2)^-1 is diagonal, and its mean is linear in x. Every importance weight is
  then p(x) itself: log p(x) = log N(x; b, W W' + sigma^2 I)."""
  w_DxZ = np.array([[1.0, 1.0], [1.0, -1.0], [0.0, 2.0]])  # W'W = diag(2, 6).
  b_D, sigma = np.array([0.2, -0.1, 0.4]), 0.5
  cov_ZxZ = np.linalg.inv(np.eye(2) + w_DxZ.T @ w_DxZ / sigma**2)
  a_ZxD = cov_ZxZ @ w_DxZ.T / sigma**2  # Posterior mean = A (x - b).
  config = configs.base()
  config.model.name, config.loss, config.model.latents = "vae", "elbo", 2
  config.model.hidden, config.model.decoder_dist = (), "gaussian"
  config.model.decoder_std = decoder_std
  model = families.create_model(config.model, (1, 3, 1))
  enc_kernel = np.concatenate([a_ZxD.T, np.zeros((3, 2))], axis=1)
  enc_bias = np.concatenate([-a_ZxD @ b_D, np.log(np.diag(cov_ZxZ))])
  if decoder_std:
    dec_kernel, dec_bias = w_DxZ.T, b_D
  else:  # Pixel d's outputs are (mean, log-std): a constant log-std of log sigma.
    dec_kernel = np.stack([w_DxZ.T, np.zeros((2, 3))], axis=-1).reshape(2, 6)
    dec_bias = np.stack([b_D, np.full(3, np.log(sigma))], axis=-1).reshape(6)
  params = {"encoder": {"Dense_0": {"kernel": enc_kernel, "bias": enc_bias}},
            "decoder": {"Dense_0": {"kernel": dec_kernel, "bias": dec_bias}}}
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
  chex.assert_trees_all_equal_shapes(
      params, model.init(jax.random.key(0), jnp.zeros((1, 1, 3, 1)), jax.random.key(1))["params"])
  log_px = stats.multivariate_normal(b_D, w_DxZ @ w_DxZ.T + sigma**2 * np.eye(3)).logpdf
  return config, model, params, log_px


@pytest.mark.quick
@pytest.mark.parametrize("decoder_std", [0.5, 0.0], ids=["fixed_std", "learned_std"])
def test_the_nll_estimator_is_exact_for_a_linear_gaussian_vae(decoder_std):
  config, model, params, log_px = _linear_gaussian_vae(decoder_std)
  x_Bx = np.array([[0.3, -0.6, 1.2], [2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], np.float32)
  x = jnp.asarray(x_Bx).reshape(3, 1, 3, 1)
  keys_B = jax.random.split(jax.random.key(2), 3)
  log_w_KxB = likelihood.importance_log_weights(model, params, x, x, keys_B, 64, 16)
  # Every sample's weight is p(x): the exact posterior as proposal.
  np.testing.assert_allclose(log_w_KxB, np.broadcast_to(log_px(x_Bx), (64, 3)), rtol=1e-5,
                             atol=1e-5)
  config.eval_num_samples, config.eval_sample_chunk = 8, 8
  nll = shared.test_nll(model, params, x, x, posterior_streams(keys_B), config)
  np.testing.assert_allclose(nll["nll"], -log_px(x_Bx), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(nll["nll_bits_per_dim"], -log_px(x_Bx) / (3 * np.log(2)), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("name", [n for n, f in families.FAMILIES.items() if f.LIKELIHOOD])
def test_every_family_with_a_likelihood_trains_and_evaluates_a_logistic_mixture(name):
  """Each family's test NLL (the IWAE bound of 64 samples) lies below its own negative ELBO by a
  gap larger than three standard errors, over 128 copies of each of 2 images with their own keys
  (catches: log q(z|x) left out of the VAE's log weights, which puts the NLL above -ELBO; the
  NLL taken as the mean log weight, which closes the gap)."""
  config = configs.base()
  config.model.name, config.loss, config.model.decoder_dist = name, "elbo", "logistic"
  config.model.decoder_components = 2
  config.model.hidden, config.model.latents, config.eval_num_samples = (16,), 3, 64
  if name == "hvae":
    config.model.hidden2, config.model.latents2 = (8,), 2
  if name == "flow_vae":
    config.model.flow, config.model.flow_length, config.model.flow_hidden = "iaf", 2, (8,)
  config.model.num_pseudo = 5 if name == "vamp" else config.model.num_pseudo
  validation.validate_config(config, 1)
  model = families.create_model(config.model, (4, 4, 3))
  copies = 128
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)) / 255, jnp.float32)
  x = jnp.tile(x, (copies, 1, 1, 1))  # Example c * 2 + i: copy c of image i.
  keys_B = jax.random.split(jax.random.key(0), 2 * copies)
  # Jitted: compiling each function once is quicker on the CPU than dispatching op by op.
  params = jax.jit(model.init)(jax.random.key(1), x, keys_B)["params"]
  chex.assert_shape(jax.jit(model.apply)({"params": params}, x, keys_B)["logits"],
                    (2 * copies, 4, 4, 18))
  hp = {**hparams.of(config), hparams.NUM_TRAIN: jnp.float32(100)}
  streams = sampling.streams(keys_B)
  train = jax.jit(lambda p: objectives.per_example(model, p, x, x, streams, config, hp,
                                                   training=True, step=jnp.int32(0)))(params)
  test = jax.jit(lambda p: objectives.per_example(model, p, x, x, streams, config, hp,
                                                  training=False))(params)
  assert np.all(np.isfinite(train["loss"])) and np.all(test["nll"] > 0)
  np.testing.assert_allclose(test["nll_bits_per_dim"], test["nll"] / (48 * np.log(2)), rtol=1e-6)
  gap_CxI = (-np.asarray(test["elbo"], np.float64) - np.asarray(test["nll"])).reshape(copies, 2)
  mean_I, se_I = gap_CxI.mean(0), gap_CxI.std(0, ddof=1) / np.sqrt(copies)
  assert np.all(mean_I > 3 * se_I), (mean_I, se_I)


@pytest.mark.quick
@pytest.mark.parametrize("fields,message", [
    ({"model.decoder_dist": "gausian"}, "unknown config.model.decoder_dist='gausian'; use one of"),
    ({"model.decoder_std": 0.1}, "decoder_std=0.1 is the fixed std of config.model.decoder_dist="
                                 "'gaussian'; set it to 0.0 for 'bernoulli'"),
    ({"model.decoder_dist": "gaussian", "model.decoder_std": -1.0},
     "config.model.decoder_std=-1.0"),
    ({"model.decoder_dist": "gaussian", "model.decoder_components": 5},
     "decoder_components=5 is the mixture size of config.model.decoder_dist='logistic'; set it "
     "to 1 for 'gaussian'"),
    ({"model.name": "ae", "loss": "mse", "model.decoder_dist": "logistic"},
     "decoder_dist='logistic' is the likelihood of a VAE family; model 'ae' trains on "
     "config.loss"),
])
def test_validation_refuses_a_bad_decoder_in_one_line(fields, message):
  config = configs.base()
  config.model.name, config.loss = "vae", "elbo"
  config.update_from_flattened_dict(fields)
  with pytest.raises(UserError) as e:
    validation.validate_config(config, 1)
  assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.quick
def test_a_run_saved_before_the_decoder_field_restores_with_the_bernoulli(tmp_path):
  config = configs.base()
  saved = json.loads(config.to_json_best_effort())
  del saved["model"]["decoder_dist"], saved["model"]["decoder_std"]
  os.makedirs(tmp_path / "run")
  with open(rundir.config_path(str(tmp_path / "run")), "w") as f:
    json.dump(saved, f)
  loaded = restored.load_config(str(tmp_path / "run"))
  assert isinstance(loaded, ml_collections.ConfigDict)
  assert (loaded.model.decoder_dist, loaded.model.decoder_std) == ("bernoulli", 0.0)
  assert loaded.model.latents == config.model.latents


def _best_constant_bits_per_dim(train_NxD, test_NxD):
  """The best prediction that ignores the image: each pixel position's own 256-level histogram
  over the training images (add-one smoothed), scored on the test images, in bits per pixel."""
  counts_DxL = np.stack([np.bincount(col, minlength=256) for col in train_NxD.T]) + 1.0
  log2_p_DxL = np.log2(counts_DxL / counts_DxL.sum(axis=1, keepdims=True))
  return -np.mean(log2_p_DxL[np.arange(train_NxD.shape[1])[None], test_NxD])


def test_a_logistic_vae_on_mnist_grey_levels_beats_the_best_constant_in_bits_per_dim(
    mnist, data_dir, tmp_path):
  """480 steps on 12,000 grey-level images: measured (CPU) 1.674 bits/dim on the first 500
  test images against the best constant's 1.724, 27 nats per image better; analyze's estimate
  on the first 200 of them, 1.698."""
  workdir = str(tmp_path / "logistic")
  proc = run_aejax("--config=experiments/vae.py", f"--workdir={workdir}",
                   f"--data_dir={data_dir}", "--config.model.decoder_dist=logistic",
                   "--config.learning_rate=0.003", "--config.input.binarize=none",
                   "--config.num_epochs=4", "--config.input.train_split=train[:12000]",
                   "--config.input.test_split=test[:500]", "--config.eval_num_samples=20",
                   "--config.eval_every_epochs=4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  test = [r for r in rundir.read_metrics(workdir) if r["split"] == "test"][-1]
  np.testing.assert_allclose(test["nll_bits_per_dim"], test["nll"] / (784 * np.log(2)),
                             rtol=1e-5)
  train_images, _, test_images, _ = mnist
  constant = _best_constant_bits_per_dim(train_images[:12000].reshape(12000, -1),
                                         test_images[:500].reshape(500, -1))
  assert test["nll_bits_per_dim"] < constant - 0.03, (test["nll_bits_per_dim"], constant)
  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", "--k=20",
                   "--nll_images=200", "--probe_examples=1000", module="aejax.analyze")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "analysis", "metrics.json")) as f:
    m = json.load(f)["metrics"]
  np.testing.assert_allclose(m["nll_bits_per_dim"], m["nll"] / (784 * np.log(2)), rtol=1e-6)
  assert m["rec_nll"] > 0 and "bce" not in m
  assert m["nll_bits_per_dim"] < constant - 0.02
