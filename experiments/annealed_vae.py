r"""The capacity-annealed beta-VAE (Burgess et al., 2018) on MNIST: reconstruction + gamma |KL -
C|, the batch's mean KL pulled towards a capacity C rising linearly from 0 to c_max = 25 nats over
the first 7,000 steps (about half of the 30 epochs of 468 batches of 128), then held; the
784-500-10 MLP VAE, Bernoulli decoder, dynamic binarisation. gamma = 1 here:
disentanglement_lib's study (on dSprites) used gamma = 1000, which in tests/test_zoo.py's
shrunken 120-step run (C reaching 25 after 60 steps) kept the test -ELBO at 1.15x the input-blind
model's NLL (rec 209 nats against its 206: the encoder's gradient is the capacity term's), while
gamma = 1 ends at 0.93x with the test KL at 26.5 nats (measured on CPU, 2 cores shared).

  python -m aejax.main --config=experiments/annealed_vae.py --workdir=/tmp/annealed_vae
  python -m aejax.analyze --workdir=/tmp/annealed_vae

Train lines report `capacity`, the mean of C over the steps the line covers; test lines the
ELBO's parts (`rec`, `kl`, `elbo`). The full 30 epochs: not run.
"""

from aejax import configs


def get_config():
  config = configs.mlp_vae(latents=10)
  config.model.name = "annealed_vae"
  config.objective.capacity_gamma = 1.0
  config.objective.capacity_max = 25.0
  config.objective.capacity_steps = 7000
  return config
