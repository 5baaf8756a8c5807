"""config.opt -> optax transformations, against the update rules written out by hand in numpy."""

import numpy as np
import pytest

from aejax import configs
from aejax import optimizers
from aejax import validation
from aejax.errors import UserError

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).

P = {"w": np.array([0.5, -1.0, 2.0], np.float32)}
GRADS = [{"w": np.array([0.3, -0.2, 4.0], np.float32)},
         {"w": np.array([-0.1, 0.5, 1.0], np.float32)}]


def _updates(config):
  """The updates of two steps of the optimizer of `config`, from P with GRADS."""
  tx = optimizers.create_optimizer(config, steps_per_epoch=1)
  state, params, out = tx.init(P), dict(P), []
  for g in GRADS:
    u, state = tx.update(g, state, params)
    params = {"w": params["w"] + np.asarray(u["w"])}
    out.append(np.asarray(u["w"]))
  return out


def _config(**opt):
  config = configs.base()
  config.learning_rate = 0.1
  config.opt.update(opt)
  validation.validate_config(config, 1)
  return config


def test_sgd_is_plain_sgd_unless_momentum_is_set():
  # opt.b1 (Adam's beta1, 0.9 by default) must not leak into SGD as momentum.
  u1, u2 = _updates(_config(name="sgd"))
  np.testing.assert_allclose(u1, -0.1 * GRADS[0]["w"], rtol=1e-6)
  np.testing.assert_allclose(u2, -0.1 * GRADS[1]["w"], rtol=1e-6)
  u1, u2 = _updates(_config(name="sgd", momentum=0.5))
  np.testing.assert_allclose(u1, -0.1 * GRADS[0]["w"], rtol=1e-6)
  np.testing.assert_allclose(u2, -0.1 * (GRADS[1]["w"] + 0.5 * GRADS[0]["w"]), rtol=1e-6)


def test_adamw_matches_the_update_rule():
  b1, b2, eps, wd = 0.9, 0.99, 1e-3, 0.01
  got = _updates(_config(name="adamw", b1=b1, b2=b2, eps=eps, weight_decay=wd))
  m = v = np.zeros(3)
  p = P["w"].astype(np.float64)
  for t, (g, u) in enumerate(zip(GRADS, got), 1):
    g = g["w"].astype(np.float64)
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    want = -0.1 * ((m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps) + wd * p)
    np.testing.assert_allclose(u, want, rtol=1e-5)
    p = p + want


def test_gradient_clipping_scales_to_the_global_norm():
  (u1, u2) = _updates(_config(name="sgd", grad_clip_norm=1.0))
  for g, u in zip(GRADS, (u1, u2)):
    norm = np.linalg.norm(g["w"])
    np.testing.assert_allclose(u, -0.1 * g["w"] * min(1.0, 1.0 / norm), rtol=1e-6)
  assert np.linalg.norm(GRADS[0]["w"]) > 1  # The first step is clipped, so the test can fail.


def test_stages_schedule_length_is_checked():
  config = configs.burda2015(num_samples=1)
  config.num_epochs = 100
  with pytest.raises(UserError, match="num_epochs=3280"):
    validation.validate_config(config, 1)
