"""The table of families is the single source of what a family is: its hooks, the losses
validation lets it train with, the fields it owns, and the objective the train step scores."""

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from aejax import configs
from aejax import families
from aejax import hparams
from aejax import objectives
from aejax import sampling
from aejax import train
from aejax import validation
from aejax.errors import UserError
from aejax.families import ae
from aejax.run import rundir
from conftest import REPO, run_aejax

REQUIRED = sorted({*families.Family.__annotations__,
                   *(n for n, v in vars(families.Family).items()
                     if callable(v) and not n.startswith("_"))})


def _tiny(name: str, loss: str | None = None):
  config = configs.base()
  config.model.name, config.model.hidden, config.model.latents = name, (16,), 8
  config.model.code_dim, config.model.codebook_size = 4, 5
  if name == "hvae":  # Its second stochastic layer has no default.
    config.model.hidden2, config.model.latents2 = (8,), 4
  if name == "flow_vae":  # Its flow has no default.
    config.model.flow, config.model.flow_length = "planar", 2
  config.loss = loss or families.FAMILIES[name].LOSSES[0]
  return config


@pytest.mark.quick
def test_the_protocol_names_the_hooks():
  assert REQUIRED == ["LIKELIHOOD", "LOSSES", "MAIN_METRIC", "OWN_FIELDS", "POOLED", "check",
                      "create", "per_example"]
  assert sorted(families.REQUIRED) == REQUIRED


@pytest.mark.quick
@pytest.mark.parametrize("name", sorted(families.FAMILIES))
def test_every_family_defines_the_hooks_and_its_model_the_interface(name):
  family = families.FAMILIES[name]
  missing = [h for h in REQUIRED if not hasattr(family, h)]
  assert not missing, f"family {name!r} lacks {missing}"
  assert family.LOSSES and all(isinstance(v, str) for v in family.LOSSES)
  assert isinstance(family.LIKELIHOOD, bool)
  if family.POOLED:
    assert callable(family.from_pooled)
  config = _tiny(name)
  validation.validate_config(config, 1)
  assert family.check(config) is None
  model = families.create_model(config.model, (28, 28, 1))
  x = jnp.zeros((3, 28, 28, 1))
  params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
  code = model.apply({"params": params}, x, method="code")
  assert code.shape == (3, 8)
  assert model.apply({"params": params}, code, method="decode").shape == (3, 28, 28, 1)
  model.apply({"params": params}, x, method="encode")
  if hasattr(model, "sample"):  # A prior's codes decode like the model's own.
    assert model.apply({"params": params}, jax.random.key(2), 4, method="sample").shape == (4, 8)


@pytest.mark.quick
@pytest.mark.parametrize("name", sorted(families.FAMILIES))
def test_validation_refuses_every_loss_the_family_does_not_list(name):
  listed = families.FAMILIES[name].LOSSES
  others = sorted({v for f in families.FAMILIES.values() for v in f.LOSSES} - set(listed))
  assert others  # Every family here lacks some other family's loss.
  for loss in others:
    with pytest.raises(UserError, match=f"config.loss='{loss}' does not fit config.model.name="
                       f"'{name}'; use one of"):
      validation.validate_config(_tiny(name, loss), 1)


@pytest.mark.quick
def test_validation_reads_the_losses_from_the_entry_itself(monkeypatch):
  validation.validate_config(_tiny("vae", "iwae"), 1)
  monkeypatch.setattr(families.FAMILIES["vae"], "LOSSES", ("elbo",))
  with pytest.raises(UserError, match="config.loss='iwae' does not fit"):
    validation.validate_config(_tiny("vae", "iwae"), 1)


@pytest.mark.quick
@pytest.mark.parametrize("name,field,value,owner", [
    ("vae", "objective.l1_code", 0.1, "model 'ae'"),
    ("vqvae", "objective.sparsity_weight", 1.0, "model 'ae'"),
    ("ae", "model.num_samples", 2, "models 'vae', 'vamp', 'hvae' and 'flow_vae'"),
    ("vae", "objective.mmd_weight", 10.0, "model 'wae'")])
def test_a_field_another_family_owns_is_refused_naming_every_owner(name, field, value, owner):
  """catches: a refusal naming the first owner found only (model.num_samples is read by vae,
  vamp and hvae)."""
  config = _tiny(name)
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(UserError, match=f"config.{field}={value!r} applies to {owner}, "
                     f"not '{name}'"):
    validation.validate_config(config, 1)


def test_a_loss_the_family_does_not_list_exits_2_with_one_line(data_dir, tmp_path):
  proc = run_aejax("--config=experiments/mlp_ae.py", "--config.loss=iwae",
                   f"--workdir={tmp_path / 'w'}", f"--data_dir={data_dir}", timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = [line for line in proc.stderr.splitlines() if line.startswith("aejax: error:")]
  assert lines == ["aejax: error: config.loss='iwae' does not fit config.model.name='ae'; use "
                   "one of ('mse', 'bce')"], proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr


def test_a_new_family_is_one_module_and_one_row(monkeypatch, mnist):
  """A family that exists only as a row of the table trains, evaluates and validates: nothing
  else names the families."""
  def per_example(*args, **kwargs):
    metrics = ae.per_example(*args, **kwargs)
    return {**metrics, "twice": 2 * metrics["loss"]}

  toy = types.SimpleNamespace(**{h: getattr(ae, h) for h in (*REQUIRED, "from_pooled")})
  toy.LOSSES, toy.OWN_FIELDS, toy.per_example = ("bce",), {}, per_example
  monkeypatch.setitem(families.FAMILIES, "toy", toy)
  with pytest.raises(UserError, match="config.loss='mse' does not fit config.model.name='toy'"):
    validation.validate_config(_tiny("toy", "mse"), 1)
  config = _tiny("toy")
  validation.validate_config(config, 1)
  model = families.create_model(config.model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jax.random.key(1))["params"]
  x = jnp.asarray(mnist[2][:8])
  m = train.per_example_metrics(params, x, jax.random.key(0), hp=hparams.of(config),
                                model=model, config=config, training=False)
  assert float(jnp.max(jnp.abs(m["twice"] - 2 * m["bce"]))) == 0
  means = objectives.from_sums({k: jnp.sum(v, 0) for k, v in m.items()}, jnp.asarray(8.0),
                               config, hparams.of(config))
  assert set(means) == {"loss", "sq_err", "bce", "twice"}


def _constant_networks(params, seed: int = 0):
  """Every kernel 0 and every other parameter drawn, N(0, 0.5^2): each network's output is its
  last bias whatever its input, so every term has a closed form (a codebook and pseudo-inputs
  stay random)."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.zeros_like(v) if "kernel" in jax.tree_util.keystr(path) else
      jnp.asarray(0.5 * rng.standard_normal(v.shape), v.dtype), params)


def _gaussian_kl(mean_q, logvar_q, mean_p, logvar_p):
  """KL(N(mean_q, e^logvar_q) || N(mean_p, e^logvar_p)), diagonal, summed: float64 numpy."""
  return 0.5 * np.sum(logvar_p - logvar_q + (np.exp(logvar_q) + (mean_q - mean_p) ** 2)
                      / np.exp(logvar_p) - 1)


COPIES = 256  # Of one image, each with its own key: the stochastic terms' means are compared.


@pytest.mark.quick
@pytest.mark.parametrize("name", sorted(families.FAMILIES))
def test_every_familys_objective_at_constant_networks_against_numpy(name):
  """With every kernel 0 the encoder gives one code (or posterior) and the decoder one set of
  logits whatever their input, so the train loss and its terms follow in numpy from those
  outputs: exactly where they are deterministic, in the mean over 256 keyed copies within 4
  standard errors where they are a one-sample estimate (catches, one per family: sq_err on the
  logits instead of the pixel means (ae), the KL's log-variance sign (vae), -log K left out of
  the VampPrior, log N left out of beta-TCVAE's minibatch weighted sampling, p(z1|z2) scored
  with q(z1|x)'s variance (hvae), the code penalty without its 1/2 (rae), the codebook term left out of the
  loss (vqvae), the MMD's cross term over j != i only (wae), the diagonal's distance from 1
  unsquared (dip_vae), the KL added besides gamma |KL - C| (annealed_vae), the log-determinant added to log q (flow_vae))."""
  config = _tiny(name)
  o = config.objective
  o.code_l2, o.decoder_reg = (0.3, 0.2) if name == "rae" else (0.0, 0.0)
  o.mmd_weight = 2.0 if name == "wae" else 0.0
  o.dip_lambda_od, o.dip_lambda_d = (2.0, 3.0) if name == "dip_vae" else (0.0, 0.0)
  o.capacity_gamma, o.capacity_max, o.capacity_steps = ((5.0, 40.0, 10) if name == "annealed_vae"
                                                        else (0.0, 0.0, 0))
  config.model.num_pseudo = 5 if name == "vamp" else config.model.num_pseudo
  validation.validate_config(config, 1)
  model = families.create_model(config.model, (28, 28, 1))
  x1 = (np.random.default_rng(1).random((1, 28, 28, 1)) > 0.5).astype(np.float32)
  x = jnp.tile(jnp.asarray(x1), (COPIES, 1, 1, 1))
  keys_B = jax.random.split(jax.random.key(2), COPIES)
  params = _constant_networks(model.init(jax.random.key(0), x[:2], keys_B[:2])["params"])
  num_train = 1000.0
  hp = {**hparams.of(config), hparams.NUM_TRAIN: jnp.float32(num_train)}
  streams = sampling.streams(keys_B)
  got = jax.jit(lambda p: families.FAMILIES[name].per_example(
      model, p, x, x, streams, config, hp, training=True, step=jnp.int32(0),
      axis_name=None))(params)
  got = {k: np.asarray(v, np.float64) for k, v in got.items()}
  v = {"params": params}
  f64 = lambda a: np.asarray(a, np.float64)
  encoded = model.apply(v, x[:1], method="encode")
  latent = f64(encoded[0] if isinstance(encoded, tuple) else encoded)[0]
  logits = f64(model.apply(v, jnp.zeros((1, latent.size if name != "vqvae" else 8)),
                           method="decode"))[0]
  xs = x1[0].astype(np.float64)
  bce = -np.sum(xs * special.log_expit(logits) + (1 - xs) * special.log_expit(-logits))
  sq_err = np.sum((special.expit(logits) - xs) ** 2)
  exact = lambda key, want: np.testing.assert_allclose(got[key], want, rtol=2e-5, atol=1e-4)

  def in_mean(key, want):
    se = got[key].std(ddof=1) / np.sqrt(COPIES)
    assert abs(got[key].mean() - want) < 4 * se + 1e-4, (key, got[key].mean(), want, se)

  if name in ("vae", "vamp", "beta_tcvae"):
    mean_Z, logvar_Z = (f64(a)[0] for a in encoded)
    exact("rec", bce)
    kl = _gaussian_kl(mean_Z, logvar_Z, 0.0, 0.0)
    if name == "vae":
      exact("kl", kl)
      exact("loss", bce + kl)
    elif name == "vamp":  # Every pseudo-input's posterior is this one: the prior is q(z|x).
      exact("kl", 0.0)
      exact("loss", bce)
    else:  # Every reference posterior is this one: log q(z) = log q(z|x) - log N, per dimension too.
      exact("mi", np.log(num_train))
      exact("tc", (latent.size - 1) * np.log(num_train))
      in_mean("loss", bce + kl)  # The three parts sum to log q(z|x) - log p(z) at the sample.
  elif name in ("dip_vae", "annealed_vae"):
    mean_Z, logvar_Z = (f64(a)[0] for a in encoded)
    exact("rec", bce)
    kl = _gaussian_kl(mean_Z, logvar_Z, 0.0, 0.0)
    if name == "dip_vae":  # Equal codes: their covariance is 0, each (0 - 1)^2 weighs 3.
      exact("dip", 3.0 * latent.size)
      exact("loss", bce + kl + 3.0 * latent.size)
    else:  # At step 0 the capacity C is 0.
      exact("capacity", 0.0)
      exact("loss", bce + 5.0 * kl)
  elif name == "hvae":
    mean1, logvar1 = (f64(a)[0] for a in encoded)
    gauss = lambda net: (lambda m, h: m._gaussian(getattr(m, net), h))
    mean2, logvar2 = (f64(a)[0] for a in model.apply(v, jnp.zeros((1, 8)), method=gauss("encoder2")))
    mean_p1, logvar_p1 = (f64(a)[0] for a in model.apply(v, jnp.zeros((1, 4)),
                                                         method=gauss("decoder2")))
    in_mean("loss", bce + _gaussian_kl(mean1, logvar1, mean_p1, logvar_p1)
            + _gaussian_kl(mean2, logvar2, 0.0, 0.0))
  elif name == "flow_vae":
    # The encoder's outputs are its last bias: one q_0 and one flow for every copy. Copy b's z_0
    # is its posterior draw; its log-det is slogdet of the flow's Jacobian (jax.jacfwd) there.
    mean_Z, logvar_Z, flow_P = (f64(a)[0] for a in model.apply(v, x[:1], method="posterior"))
    z0_BxZ = mean_Z + np.exp(0.5 * logvar_Z) * f64(
        sampling.normal(streams.posterior, (COPIES, latent.size)))
    flow = lambda z: model.apply(v, z[None, None], jnp.asarray(flow_P[None], jnp.float32),
                                 method="flow_through")[0][0, 0]
    z0 = jnp.asarray(z0_BxZ, jnp.float32)
    z_l = f64(jax.jit(jax.vmap(flow))(z0))
    log_det = f64(jax.jit(jax.vmap(lambda z: jnp.linalg.slogdet(jax.jacfwd(flow)(z))[1]))(z0))
    log_normal = lambda z, m, lv: -0.5 * np.sum((z - m) ** 2 / np.exp(lv) + lv + np.log(2 * np.pi),
                                                axis=-1)
    kl = log_normal(z0_BxZ, mean_Z, logvar_Z) - log_det - log_normal(z_l, 0.0, 0.0)
    exact("rec", bce)  # The decoder's logits are its bias, whatever the code.
    exact("kl", kl)
    exact("loss", bce + kl)
  elif name == "ae":
    exact("bce", bce)
    exact("loss", sq_err)
  elif name == "rae":
    decoder_l2 = 0.5 * sum(np.sum(f64(a) ** 2) for a in jax.tree.leaves(params["decoder"]))
    exact("loss", sq_err + 0.3 * 0.5 * np.sum(latent ** 2) + 0.2 * decoder_l2)
  elif name == "vqvae":
    z_e_NxD = f64(model.apply(v, x[:1], method=lambda m, x: m.encoder(x))).reshape(
        -1, config.model.code_dim)  # `encode` gives the quantised code.
    codebook_KxD = f64(params["quantizer"]["codebook"])
    nearest_NxD = codebook_KxD[np.argmin(((z_e_NxD[:, None] - codebook_KxD) ** 2).sum(-1), 1)]
    dist = np.sum((z_e_NxD - nearest_NxD) ** 2)
    exact("codebook", dist)
    exact("loss", sq_err + (1 + config.objective.commitment) * dist)
  elif name == "wae":
    # The codes are all one point c; example b's prior draw is N(0, I) from its prior stream.
    prior_BxZ = f64(jax.vmap(lambda k: jax.random.normal(k, latent.shape))(streams.prior.key))
    c = 2.0 * latent.size
    k_pp = c / (c + ((prior_BxZ[:, None] - prior_BxZ[None]) ** 2).sum(-1))
    k_zp_B = c / (c + ((prior_BxZ - latent) ** 2).sum(-1))
    n = COPIES
    # Example i's terms: 1/(n-1) sum_{j != i} [k(c, c) + k(p_i, p_j)] - 1/n sum_j [k(c, p_j) +
    # k(p_i, c)], k(c, c) = 1; their mean is the U-statistic.
    mmd_B = (1.0 + (k_pp.sum(1) - 1.0) / (n - 1)) - (k_zp_B.mean() + k_zp_B)
    exact("mmd", mmd_B)
    exact("loss", sq_err + 2.0 * mmd_B)


def _module_like(base, **names):
  """A module holding `base`'s names, then `names` (None deletes one)."""
  module = types.ModuleType(f"aejax.families.{base.__name__.rsplit('.', 1)[-1]}_copy")
  module.__dict__.update({k: v for k, v in vars(base).items() if not k.startswith("__")})
  for k, v in names.items():
    if v is None:
      delattr(module, k)
    else:
      setattr(module, k, v)
  return module


@pytest.mark.quick
@pytest.mark.parametrize("names,message", [
    ({"EX_POST_COMPONENT": 10}, "defines 'EX_POST_COMPONENT', which no part of aejax reads "
     "(did you mean 'EX_POST_COMPONENTS'?)"),
    ({"REPORT": ("mmd",)}, "(did you mean 'REPORTS'?)"),
    ({"per_examples": ae.per_example, "per_example": None}, "does not define 'per_example' (is "
     "'per_examples' meant to be it?)"),
    ({"from_pool": ae.from_pooled, "from_pooled": None}, "does not define 'from_pooled'"),
    ({"DIAGONAL_GAUSSIAN_POSTERIORS": True}, "did you mean 'DIAGONAL_GAUSSIAN_POSTERIOR'?"),
    ({"SPARSITY": 0.1}, "defines 'SPARSITY', which no part of aejax reads (aejax reads only"),
], ids=["optional_constant", "reports", "required_hook", "pooled_hook", "flag", "own_constant"])
def test_a_misspelt_or_unknown_hook_name_is_an_error_naming_the_module_and_the_intended_name(
    names, message):
  """Optional hooks are read with getattr, so a misspelt one would silently turn its feature
  off; catches: a check_module that skips the names it does not know."""
  with pytest.raises(TypeError, match=r"family 'toy' \(aejax.families.ae_copy\) ") as e:
    families.check_module("toy", _module_like(ae, **names))
  assert message in str(e.value)


@pytest.mark.quick
def test_every_module_of_the_table_passes_the_import_check_and_names_its_main_metric():
  for name, module in families.FAMILIES.items():
    families.check_module(name, module)
    assert module.MAIN_METRIC in ("loss", "sq_err", "elbo"), name


# --- Randomness streams ------------------------------------------------------------------------

def _key_set(keys) -> set[tuple[int, ...]]:
  keys = keys.key if isinstance(keys, sampling.Stream) else keys
  return {tuple(int(v) for v in row) for row in np.asarray(jax.random.key_data(keys)).reshape(
      -1, 2)}


@pytest.mark.quick
def test_no_two_streams_share_a_key_nor_any_draw_of_the_posteriors_samples():
  """Over a batch of 64 examples: the five streams, the example keys, and the keys from which
  the estimator (aejax.likelihood) draws posterior sample j = 0..99 and the test NLL's samples
  are all distinct. catches: two streams from the same fold_in (e.g. prior = posterior), a stream
  that is the example's own key, or a prior stream among fold_in(posterior, j)."""
  keys_B = sampling.example_keys(jax.random.key(11), 0, 64)
  streams = sampling.streams(keys_B)
  assert streams._fields == ("input", "corrupt", "posterior", "prior", "extra")
  sets = {name: _key_set(getattr(streams, name)) for name in streams._fields}
  sets["example"] = _key_set(keys_B)
  j_J = jnp.arange(100)
  per_sample = lambda s: jax.vmap(lambda j: sampling.fold_in(s, j).key)(j_J)
  sets["posterior samples"] = _key_set(per_sample(streams.posterior))
  sets["nll samples"] = _key_set(per_sample(sampling.fold_in(streams.posterior, 1)))
  assert [len(s) for s in sets.values()] == [64] * 6 + [6400] * 2  # No repeat inside a set.
  names = sorted(sets)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      assert not sets[a] & sets[b], f"streams {a!r} and {b!r} share keys"


@pytest.mark.quick
def test_a_family_receives_the_prior_and_extra_streams_apart_from_the_models_posterior_noise(
    monkeypatch, mnist):
  """Through the train step's own path (train.per_example_metrics): a family that draws from
  streams.prior and streams.extra never gets the noise the model drew for its posterior sample.
  catches: per_example_metrics handing the family the model's keys as its prior or extra stream
  (as the WAE's prior draws once came from the model's keys)."""
  from aejax.families import vae

  def per_example(model, params, x_in, x, streams, config, hp, **kwargs):
    metrics = vae.per_example(model, params, x_in, x, streams, config, hp, **kwargs)
    out = model.apply({"params": params}, x_in, streams.posterior)
    eps_BxZ = (out["z"] - out["mean"]) / jnp.exp(0.5 * out["logvar"])  # The posterior's noise.
    for name in ("prior", "extra"):
      draw_BxZ = sampling.normal(getattr(streams, name), eps_BxZ.shape)
      metrics[f"{name}_gap"] = jnp.min(jnp.abs(draw_BxZ - eps_BxZ), axis=1)
    return metrics

  toy = _module_like(vae, per_example=per_example)
  monkeypatch.setitem(families.FAMILIES, "toy", toy)
  config = _tiny("vae")
  config.model.name = "toy"
  validation.validate_config(config, 1)
  model = families.create_model(config.model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jax.random.key(1))["params"]
  m = jax.jit(lambda p, x: train.per_example_metrics(
      p, x, jax.random.key(4), hp=hparams.of(config), model=model, config=config,
      training=True, step=jnp.asarray(0)))(params, jnp.asarray(mnist[2][:16]))
  # Independent N(0, 1) draws differ in every coordinate; equal ones would give a gap of 0.
  assert float(jnp.min(m["prior_gap"])) > 1e-6 and float(jnp.min(m["extra_gap"])) > 1e-6


# --- A new family from docs/families.md alone --------------------------------------------------

EXPERIMENT = '''from aejax import configs


def get_config():
  c = configs.mlp_vae(latents=4)
  c.model.name = "{name}"
  c.model.hidden = (64,)
  c.objective.mmd_weight = {mmd_weight}
  # A small run: 20 steps on 2,000 train images, evaluated on 500 test images.
  c.input.train_split, c.input.test_split = "train[:2000]", "test[:500]"
  c.batch_size, c.eval_batch_size, c.num_epochs, c.eval_num_samples = 100, 500, 1, 10
  return c
'''


def _docs_family_module(tmp_path):
  """The InfoVAE module exactly as docs/families.md writes it, imported from a file."""
  text = open(os.path.join(REPO, "docs", "families.md")).read()
  section = text.split("### Reusing another family's terms and fields", 1)[1]
  source = re.search(r"^```python\n(.*?)^```", section, flags=re.S | re.M).group(1)
  path = tmp_path / "infovae.py"
  path.write_text(source)
  spec = importlib.util.spec_from_file_location("infovae", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# aejax.analyze with the family of the file argv[1] added as one row of FAMILIES.
ANALYZE_WITH_ROW = """
import importlib.util, runpy, sys
spec = importlib.util.spec_from_file_location("infovae", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from aejax import families
families.FAMILIES["infovae"] = module
sys.argv = ["aejax.analyze", *sys.argv[2:]]
runpy.run_module("aejax.analyze", run_name="__main__")
"""


def test_a_family_written_from_the_docs_alone_trains_analyses_and_compares_against_a_vae(
    monkeypatch, caplog, data_dir, tmp_path):
  """One module (the docs' own lines), one row and one experiment file, and no other edit: the
  InfoVAE-MMD passes the import check, trains with the MMD in its loss and its log line, is
  analysed with its MMD in report.md, and compares with a VAE on the ELBO, its MAIN_METRIC.
  catches: a MAIN_METRIC still read from a table in compare.py, REPORTS that reach neither the
  log line nor the analysis, a shared field's refusal that forgets an owner."""
  from aejax import compare

  module = _docs_family_module(tmp_path)
  families.check_module("infovae", module)  # What the table does at import.
  monkeypatch.setitem(families.FAMILIES, "infovae", module)
  workdirs = {}
  caplog.set_level(logging.INFO)
  for name, weight in (("infovae", 10.0), ("vae", 0.0)):
    path = tmp_path / f"{name}_experiment.py"
    path.write_text(EXPERIMENT.format(name=name, mmd_weight=weight))
    config = configs.load_experiment(str(path))
    validation.validate_config(config, 1)
    workdirs[name] = str(tmp_path / name)
    train.train_and_evaluate(config, workdirs[name], data_dir=data_dir)
  # The shared field is refused for the VAE naming both of its owners.
  config.objective.mmd_weight = 1.0
  with pytest.raises(UserError, match="applies to models 'wae' and 'infovae', not 'vae'"):
    validation.validate_config(config, 1)

  records = [json.loads(line) for line in open(os.path.join(workdirs["infovae"],
                                                                "metrics.jsonl"))]
  train_line = next(r for r in records if r["split"] == "train")
  # The MMD is in the objective with its weight: loss = rec + kl + 10 mmd, in the epoch's means.
  np.testing.assert_allclose(train_line["loss"], train_line["rec"] + train_line["kl"]
                             + 10.0 * train_line["mmd"], rtol=1e-5)
  assert any(f"mmd {train_line['mmd']:.4f}" in r.getMessage() for r in caplog.records
             if "train loss" in r.getMessage())
  assert {"nll", "elbo"} <= set(records[-1])  # The test NLL comes with LIKELIHOOD.

  # The command as a user runs it, with the row added (aejax.analyze's flags would clash with
  # aejax.main's in a process that has imported both).
  proc = subprocess.run(
      [sys.executable, "-c", ANALYZE_WITH_ROW, str(tmp_path / "infovae.py"),
       f"--workdir={workdirs['infovae']}", "--k=10", f"--data_dir={data_dir}",
       "--nll_images=100", "--probe_examples=500"], cwd=REPO, capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(workdirs["infovae"], "analysis", "metrics.json")) as f:
    result = json.load(f)
  assert result["metrics"]["train_mmd"] == pytest.approx(train_line["mmd"])
  assert result["metrics"]["nll"] <= -result["metrics"]["elbo"] + 1e-3
  report = open(os.path.join(workdirs["infovae"], "analysis", "report.md")).read()
  assert "| `train_mmd` |" in report

  assert compare.main_metric("infovae") == "elbo"
  table = compare.compare([workdirs["infovae"], workdirs["vae"]], None, None)
  header, _, *rows = table.splitlines()[:4]
  assert "test elbo ↑" in header and "model.name" in header
  finals = {name: next(r for r in rundir.read_metrics(d) if r["split"] == "test")["elbo"]
            for name, d in workdirs.items()}
  for row, name in zip(rows, ("infovae", "vae")):
    value = finals[name]
    assert f"| {name} |" in row and f"| {value:.{compare._decimals(value)}f} |" in row, row
