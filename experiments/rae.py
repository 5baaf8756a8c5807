r"""RAE (Ghosh et al., 2020) on MNIST: a 16-d deterministic code with code_l2 (the paper's beta)
1e-4 on ||z||^2 / 2, L2 weight decay on the decoder (decoder_reg 1e-7), squared-error
reconstruction, batch 100; samples come from a 10-component Gaussian mixture fitted to the train
codes by aejax.analyze. The 784-512-256 MLP of experiments/mlp_ae.py instead of the paper's
convnet, so the two files differ only in the code and its regularisers.

  python -m aejax.main --config=experiments/rae.py --workdir=/tmp/rae

The gradient-penalty decoder instead: --config.objective.rae_reg=gp

The weights: code_l2 1e-4 is the paper's beta as we recall it and decoder_reg 1e-7 our choice,
neither checked against the paper here. At 1e-7 the decoder term adds ~1e-4 to a loss of ~9, so
these runs are close to an AE with a code penalty; raise decoder_reg to make it bite.

Measured (CPU, 2 cores, shared with other jobs), 3 epochs (--config.num_epochs=3): test sq_err
8.90 per image, 28 s of training, 37 s wall; with rae_reg=gp 8.89, 326 s of training, 335 s
wall (the exact 16-column Jacobian per image: ~10x the step's cost); experiments/mlp_ae.py at
the same epochs, code size and batch (--config.num_epochs=3 --config.model.latents=16
--config.batch_size=100): 8.93, 51 s wall. The paper's 100 epochs: not run yet.
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "rae"
  config.model.hidden = (512, 256)
  config.model.latents = 16
  config.loss = "mse"
  config.objective.code_l2 = 1e-4
  config.objective.rae_reg = "l2"
  config.objective.decoder_reg = 1e-7
  config.batch_size = 100
  config.num_epochs = 100
  return config
