"""Vectorised groups: G runs as one vmapped program equal the same runs trained one by one.

Time: every hyperparameter field, schedule and optimizer as a group of two runs and the same runs
alone (about 100 trainings, each compiled), and the conv groups on real MNIST.
"""

import json
import os

import jax
import numpy as np
import pytest

from aejax import configs
from aejax import group
from aejax import hparams
from aejax import parallel
from aejax import train
from aejax.configs import load_experiment
from aejax.data.dataset import pad_to_multiple
from aejax.data.splits import Data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = ("time", "examples_per_sec")  # Wall-clock fields differ between any two runs.


def _experiment(name):
  return load_experiment(os.path.join(REPO, "experiments", f"{name}.py"))


def _shrink(config, seed, lr):
  config.seed, config.learning_rate = seed, lr
  config.batch_size = 3000  # 20 steps per epoch of the 60k MNIST training images.
  config.num_epochs = 1
  config.eval_batch_size = 2000
  return config


def _small_vae(seed, lr):
  config = _shrink(_experiment("vae"), seed, lr)
  config.model.hidden, config.model.latents = (32,), 4
  return config


def _small_conv_ae(seed, lr):
  config = _shrink(_experiment("conv_ae"), seed, lr)
  config.model.channels, config.model.latents = (4, 8), 4
  # The squared error: with the file's cross-entropy one decoder bias of 392 differs by 1.7e-5
  # after 20 steps (Adam's division by sqrt(v) turns the vmapped convolutions' summation order
  # into a visible update of a near-zero gradient), beyond the atol 1e-6 this test holds to.
  config.loss = "mse"
  return config


def _lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in SKIP} for line in f]


def _assert_group_equals_runs_alone(make_config, values, root, data_dir):
  cfgs = [make_config(seed, lr) for seed, lr in values]
  alone = [train.train_and_evaluate(c, str(root / f"alone{i}"), data_dir=data_dir)
           for i, c in enumerate(cfgs)]
  group = train.train_group(cfgs, [str(root / f"group{i}") for i in range(len(cfgs))],
                            data_dir=data_dir)
  for i, state in enumerate(alone):
    got = jax.tree.map(lambda x: np.asarray(x[i]), group.params)
    jax.tree.map(lambda a, d: np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6), got,
                 jax.device_get(state.params))
    want_lines, got_lines = _lines(root / f"alone{i}"), _lines(root / f"group{i}")
    assert [(l["step"], l["split"], sorted(l)) for l in got_lines] == [
        (l["step"], l["split"], sorted(l)) for l in want_lines]
    for g, w in zip(got_lines, want_lines):
      numbers = [k for k in sorted(w) if k != "split"]
      np.testing.assert_allclose([g[k] for k in numbers], [w[k] for k in numbers], rtol=1e-5,
                                 atol=1e-6)
  # The runs really differ: a group that trained one run four times would pass the above only
  # if every run were the same.
  first = jax.tree.leaves(group.params)[0]
  assert not np.allclose(first[0], first[1])


def test_vae_group_of_2_seeds_x_2_learning_rates_equals_4_runs_alone(data_dir, tmp_path):
  values = [(0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
  _assert_group_equals_runs_alone(_small_vae, values, tmp_path, data_dir)


def _trainer_pieces(cfgs, train_images, test_images, vectorized, loop="auto"):
  """The trainer's own phases (init_group, start, build_runner) on in-memory images: the group
  or the run alone as train_group builds it, without run directories."""
  mesh = parallel.make_mesh()
  test, mask = pad_to_multiple(test_images, cfgs[0].eval_batch_size)
  spe = len(train_images) // cfgs[0].batch_size
  data = Data(train_images.shape[1:], len(train_images), spe,
              parallel.put_replicated(train_images, mesh), None, None,
              parallel.put_replicated(test, mesh), parallel.put_replicated(mask, mesh))
  for c in cfgs:
    c.loop = loop
  g = train.init_group(cfgs, data, group.layout(len(cfgs), vectorized))
  train.start(g, data)
  return g, train.build_runner(g, data), spe


def _train_epochs(cfgs, train_images, test_images, vectorized, loop="auto"):
  """(params, per-epoch sums, test metrics) after num_epochs epochs; with a leading run axis
  when `vectorized`."""
  g, runner, spe = _trainer_pieces(cfgs, train_images, test_images, vectorized, loop)
  all_sums = []
  for epoch in range(1, cfgs[0].num_epochs + 1):
    g.state, sums = runner.chunk(g.state, epoch, 0, spe, g.run)
    all_sums.append(jax.device_get(sums))
  return (jax.device_get(g.state.params), all_sums,
          jax.device_get(runner.evaluate(g.state.params, g.run)))


def _assert_group_is_runs_alone(cfgs, mnist, loop="auto", atol=1e-6):
  images, test = mnist[0][:640], mnist[2][:256]
  params, sums, evals = _train_epochs(cfgs, images, test, vectorized=True, loop=loop)
  for i, c in enumerate(cfgs):
    alone_params, alone_sums, alone_eval = _train_epochs([c], images, test, vectorized=False,
                                                         loop=loop)
    take = lambda tree: jax.tree.map(lambda x: x[i], tree)
    jax.tree.map(lambda a, d: np.testing.assert_allclose(a, d, rtol=1e-5, atol=atol),
                 take(params), alone_params)
    for got, want in zip(sums, alone_sums, strict=True):
      assert sorted(got) == sorted(want)
      for k in want:
        np.testing.assert_allclose(got[k][i], want[k], rtol=1e-5, atol=atol, err_msg=k)
    assert sorted(evals) == sorted(alone_eval)
    for k in alone_eval:
      np.testing.assert_allclose(evals[k][i], alone_eval[k], rtol=1e-5, atol=atol, err_msg=k)
  first = jax.tree.leaves(params)[0]  # The runs really differ.
  assert not np.allclose(first[0], first[1])


def _tiny(family="ae", **fields):
  """A small MLP of `family`: 10 steps of 64 per epoch, 2 epochs, two evaluation batches."""
  config = configs.base()
  config.model.name = family
  if family == "vae":
    config.loss, config.input.binarize = "elbo", "dynamic"
  if family == "vqvae":
    config.model.codebook_size, config.model.code_dim = 16, 2
  config.model.hidden, config.model.latents = (16,), 4
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 128, 2
  config.update_from_flattened_dict(fields)
  return config


def _two_runs(varied: dict[str, tuple], **fixed):
  """Two configs of one group: seeds 0 and 1, each field of `varied` at its two values."""
  family = fixed.pop("family", "ae")
  return [_tiny(family, seed=i, **{k: v[i] for k, v in varied.items()}, **fixed)
          for i in range(2)]


# Every field of hparams.FIELDS varied across a group, in a family (and objective) that uses it.
FIELD_CASES = {
    "learning_rate": _two_runs({"learning_rate": (1e-3, 3e-3)}),
    "objective.beta": _two_runs({"objective.beta": (0.5, 2.0)}, family="vae"),
    "objective.kl_warmup_steps": _two_runs({"objective.kl_warmup_steps": (5, 15)},
                                           family="vae"),
    "input.noise_level": _two_runs({"input.noise_level": (0.1, 0.4)}, **{
        "input.corruption": "gaussian"}),
    "objective.l1_code": _two_runs({"objective.l1_code": (0.1, 1.0)}),
    "objective.sparsity_weight": _two_runs({"objective.sparsity_weight": (0.5, 3.0)}, **{
        "model.code_activation": "sigmoid"}),
    "objective.commitment": _two_runs({"objective.commitment": (0.1, 2.0)}, family="vqvae"),
    "opt.weight_decay": _two_runs({"opt.weight_decay": (1e-4, 0.3)}, **{"opt.name": "adamw"}),
    "objective.mmd_weight": _two_runs({"objective.mmd_weight": (1.0, 10.0)}, family="wae"),
    "objective.code_l2": _two_runs({"objective.code_l2": (0.01, 1.0)}, family="rae"),
    "objective.decoder_reg": _two_runs({"objective.decoder_reg": (0.01, 1.0)}, family="rae", **{
        "objective.rae_reg": "gp"}),
    # At tc_beta = 0.5 one near-zero-gradient weight of the group ends 1.5e-6 from its run
    # alone (Adam's division by sqrt(v) shows the vmapped batch sums' rounding), past atol 1e-6.
    **{f"objective.{f}": _two_runs({f"objective.{f}": (2.0, 6.0)}, family="beta_tcvae",
                                   loss="elbo") for f in ("tc_alpha", "tc_beta", "tc_gamma")},
    "objective.ciwae_beta": _two_runs({"objective.ciwae_beta": (0.05, 0.5)}, family="vae", **{
        "loss": "ciwae", "model.num_samples": 2}),
    # The covariance penalty is a statistic of each run's own batch: DIP-VAE-I's and II's.
    "objective.dip_lambda_od": _two_runs({"objective.dip_lambda_od": (1.0, 5.0)},
                                         family="dip_vae", loss="elbo"),
    "objective.dip_lambda_d": _two_runs({"objective.dip_lambda_d": (1.0, 5.0)},
                                        family="dip_vae", loss="elbo", **{
                                            "objective.dip_type": "ii"}),
    **{f"objective.capacity_{f}": _two_runs(
        {f"objective.capacity_{f}": values}, family="annealed_vae", loss="elbo", **{
            f"objective.capacity_{g}": v for g, v in (("gamma", 5.0), ("max", 10.0),
                                                      ("steps", 8)) if g != f})
       for f, values in (("gamma", (2.0, 20.0)), ("max", (2.0, 10.0)), ("steps", (4, 15)))},
}


def test_the_fields_cover_every_hyperparameter():
  assert sorted(FIELD_CASES) == sorted(hparams.FIELDS)


@pytest.mark.parametrize("field", sorted(FIELD_CASES))
def test_a_group_varying_each_field_equals_its_runs_alone(field, mnist):
  _assert_group_is_runs_alone(FIELD_CASES[field], mnist)


@pytest.mark.parametrize("schedule", ["constant", pytest.param("cosine", marks=pytest.mark.quick),
                                      "stages"])
@pytest.mark.parametrize("opt", ["adam", "adamw", "sgd"])
def test_a_learning_rate_group_equals_its_runs_alone_for_every_schedule_and_optimizer(
    schedule, opt, mnist):
  """Each run trains at its own rate and weight decay under every schedule (a schedule built
  from run 0's rate, as the cosine one was, fails here: mutation run)."""
  fixed = {"opt.schedule": schedule, "opt.name": opt}
  if schedule == "stages":  # 2 stages of 1 epoch: the rate drops at the epoch boundary.
    fixed.update({"opt.stages": 2, "opt.stage_growth": 1, "opt.stage_decay": 0.1})
  if opt == "sgd":
    fixed["opt.momentum"] = 0.9
  varied = {"learning_rate": (1e-3, 1e-2) if opt != "sgd" else (1e-4, 1e-3)}
  if opt == "adamw":
    varied["opt.weight_decay"] = (1e-4, 0.3)
  _assert_group_is_runs_alone(_two_runs(varied, **fixed), mnist)


@pytest.mark.parametrize("loop,group_runs,conv_impl", [
    ("scan", "vmap", "strided"), ("host", "vmap", "strided"), ("host", "unroll", "strided"),
    ("scan", "unroll", "space_to_depth"), ("host", "unroll", "space_to_depth")])
def test_conv_ae_group_equals_runs_alone(mnist, loop, group_runs, conv_impl):
  """The conv family through the loop's chunk, scanned and as a host loop (conv models' choice
  on CPU), its runs vmapped and unrolled (config.group_runs), on 640 images (20 steps of 32): a
  whole-MNIST epoch of XLA's CPU convolutions would cost minutes.
  catches (unroll): every run given run 0's slice of the state or of the run inputs."""
  cfgs = [_small_conv_ae(0, 1e-3), _small_conv_ae(1, 3e-3)]
  for c in cfgs:
    c.batch_size, c.eval_batch_size = 32, 128
    c.group_runs, c.model.conv_impl = group_runs, conv_impl
  _assert_group_is_runs_alone(cfgs, mnist, loop=loop)


def test_pmap_loop_passes_the_run_and_matches_the_mesh(data_dir, tmp_path):
  """The loop hands keys and hyperparameters to the pmapped chunk as an argument too: pmap
  and the mesh on the same 2 devices train the same weights (to 1.2e-7 on the 2-core CPU; a
  1-device mesh sums the gradient in another order, which Adam turns into differences of up to
  3e-5 in near-zero-gradient weights, more of them on some CPUs than assert_same_training lets
  through)."""
  from conftest import assert_same_training, run_aejax
  from test_sweep_vectorize import _final_params

  flags = ["--config=experiments/vae.py", f"--data_dir={data_dir}", "--config.num_epochs=1",
           "--config.batch_size=3000", "--config.eval_batch_size=2000",
           "--config.model.hidden=(16,)", "--config.steps_per_call=7"]
  for name, extra, devices in (("pmap", ["--config.parallel=pmap"], 2), ("mesh", [], 2)):
    proc = run_aejax(*flags, f"--workdir={tmp_path / name}", *extra, timeout=600,
                     env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert_same_training(_final_params(str(tmp_path / "pmap")),
                       _final_params(str(tmp_path / "mesh")))
