"""The table of families is the single source of what a family is: its hooks, the losses
validation lets it train with, the fields it owns, and the objective the train step scores."""

import types

import jax
import jax.numpy as jnp
import pytest

from aejax import configs
from aejax import families
from aejax import hparams
from aejax import objectives
from aejax import train
from aejax import validation
from aejax.errors import UserError
from aejax.families import ae
from conftest import run_aejax

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
  assert REQUIRED == ["LIKELIHOOD", "LOSSES", "OWN_FIELDS", "POOLED", "check", "create",
                      "per_example"]


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
    ("vae", "objective.l1_code", 0.1, "ae"), ("vqvae", "objective.sparsity_weight", 1.0, "ae"),
    ("ae", "model.num_samples", 2, "vae")])
def test_a_field_another_family_owns_is_refused(name, field, value, owner):
  config = _tiny(name)
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(UserError, match=f"config.{field}={value!r} applies to model '{owner}', "
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
  def per_example(*args):
    metrics = ae.per_example(*args)
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
                                model=model, config=config)
  assert float(jnp.max(jnp.abs(m["twice"] - 2 * m["bce"]))) == 0
  means = objectives.from_sums({k: jnp.sum(v, 0) for k, v in m.items()}, jnp.asarray(8.0),
                               config, hparams.of(config))
  assert set(means) == {"loss", "sq_err", "bce", "twice"}
