"""The run directory: one rule decides whether a config may resume a run, for main and sweep."""

import pytest

from aejax import configs
from aejax.errors import UserError
from aejax.run import rundir


def test_main_and_sweep_share_the_resume_rule(tmp_path):
  from aejax import sweep

  saved = configs.base()
  rundir.write_config(str(tmp_path), saved)
  resumable = configs.base()
  resumable.num_epochs, resumable.eval_batch_size = 20, 500  # How long, how evaluated: fine.
  rundir.check_resumable(str(tmp_path), resumable)
  sweep.check_existing(sweep.Run(str(tmp_path), [], resumable))
  other = configs.base()
  other.model.latents = 3
  with pytest.raises(UserError, match="model.latents: 32 -> 3"):
    rundir.check_resumable(str(tmp_path), other)
  with pytest.raises(UserError, match="model.latents: 32 -> 3"):
    sweep.check_existing(sweep.Run(str(tmp_path), [], other))
