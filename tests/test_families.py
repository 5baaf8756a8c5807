"""The table of families is the single source of what a family is: its hooks, the losses
validation lets it train with, the fields it owns, and the objective the train step scores."""

import importlib.util
import json
import logging
import os
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
  config.loss = loss or families.FAMILIES[name].LOSSES[0]
  return config


def test_the_protocol_names_the_hooks():
  assert REQUIRED == ["LIKELIHOOD", "LOSSES", "MAIN_METRIC", "OWN_FIELDS", "POOLED", "check",
                      "create", "per_example"]
  assert sorted(families.REQUIRED) == REQUIRED


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


@pytest.mark.parametrize("name", sorted(families.FAMILIES))
def test_validation_refuses_every_loss_the_family_does_not_list(name):
  listed = families.FAMILIES[name].LOSSES
  others = sorted({v for f in families.FAMILIES.values() for v in f.LOSSES} - set(listed))
  assert others  # Every family here lacks some other family's loss.
  for loss in others:
    with pytest.raises(UserError, match=f"config.loss='{loss}' does not fit config.model.name="
                       f"'{name}'; use one of"):
      validation.validate_config(_tiny(name, loss), 1)


def test_validation_reads_the_losses_from_the_entry_itself(monkeypatch):
  validation.validate_config(_tiny("vae", "iwae"), 1)
  monkeypatch.setattr(families.FAMILIES["vae"], "LOSSES", ("elbo",))
  with pytest.raises(UserError, match="config.loss='iwae' does not fit"):
    validation.validate_config(_tiny("vae", "iwae"), 1)


@pytest.mark.parametrize("name,field,value,owner", [
    ("vae", "objective.l1_code", 0.1, "model 'ae'"),
    ("vqvae", "objective.sparsity_weight", 1.0, "model 'ae'"),
    ("ae", "model.num_samples", 2, "models 'vae', 'vamp' and 'hvae'"),
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


def test_every_module_of_the_table_passes_the_import_check_and_names_its_main_metric():
  for name, module in families.FAMILIES.items():
    families.check_module(name, module)
    assert module.MAIN_METRIC in ("loss", "sq_err", "elbo"), name


# --- Randomness streams ------------------------------------------------------------------------

def _key_set(keys) -> set[tuple[int, ...]]:
  return {tuple(int(v) for v in row) for row in np.asarray(jax.random.key_data(keys)).reshape(
      -1, 2)}


def test_no_two_streams_share_a_key_nor_any_draw_of_the_posteriors_samples():
  """Over a batch of 64 examples: the five streams, the example keys, and the keys from which
  the estimator (aejax.likelihood) draws posterior sample j = 0..99 and the test NLL's samples
  are all distinct. catches: two streams from the same fold_in (e.g. prior = posterior), a stream
  that is the example's own key, or a prior stream among fold_in(posterior, j)."""
  keys_B = sampling.example_keys(jax.random.key(11), 0, 64)
  streams = sampling.streams(keys_B, 64)
  assert streams._fields == ("input", "corrupt", "posterior", "prior", "extra")
  sets = {name: _key_set(getattr(streams, name)) for name in streams._fields}
  sets["example"] = _key_set(keys_B)
  j_J = jnp.arange(100)
  per_sample = jax.vmap(lambda k: jax.vmap(jax.random.fold_in, (None, 0))(k, j_J))
  sets["posterior samples"] = _key_set(per_sample(streams.posterior))
  sets["nll samples"] = _key_set(per_sample(sampling.fold_in(streams.posterior, 1)))
  assert [len(s) for s in sets.values()] == [64] * 6 + [6400] * 2  # No repeat inside a set.
  names = sorted(sets)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      assert not sets[a] & sets[b], f"streams {a!r} and {b!r} share keys"


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
      draw_BxZ = sampling.normal(getattr(streams, name), eps_BxZ.shape[1:])
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


def test_a_family_written_from_the_docs_alone_trains_analyses_and_compares_against_a_vae(
    monkeypatch, caplog, data_dir, tmp_path):
  """One module (the docs' own lines), one row and one experiment file, and no other edit: the
  InfoVAE-MMD passes the import check, trains with the MMD in its loss and its log line, is
  analysed with its MMD in report.md, and compares with a VAE on the ELBO, its MAIN_METRIC.
  catches: a MAIN_METRIC still read from a table in compare.py, REPORTS that reach neither the
  log line nor the analysis, a shared field's refusal that forgets an owner."""
  from aejax import analyze
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

  result = analyze.analyze(workdirs["infovae"], k=10, data_dir=data_dir, nll_images=100,
                           probe_examples=500)
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
