"""The base config every experiment file starts from.

Experiment files (`experiments/*.py`) call `base()` and change a few fields, so every experiment
has the same keys and `--config.<key>=<value>` works the same everywhere.
"""

import ml_collections


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 128  # Global batch, split across all devices of all processes.
  c.num_epochs = 10
  c.learning_rate = 1e-3
  c.eval_every_epochs = 1  # The test split is also evaluated after the last epoch.
  c.eval_batch_size = 1000  # Global; the test split is padded (and masked) to a multiple of it.
  # Train steps per jit call (a lax.scan); 0 = a whole epoch. Smaller values let a SIGTERM stop
  # (and checkpoint) sooner; the result is the same either way.
  c.steps_per_call = 0

  # 'mesh': jit over a device mesh, batch sharded on 'data', XLA inserting the gradient all-reduce;
  # 'pmap': the same train step under jax.pmap with an explicit pmean. Both give the same result.
  c.parallel = "mesh"

  # 'device': the split lives on the devices and an epoch is one scanned jit call (fits MNIST);
  # 'stream': grain reads each batch from the prepared files, for splits that do not fit. Both
  # train on the same batches for the same seed.
  c.input_mode = "device"
  c.input_workers = 4  # 'stream' only: grain worker processes that read and decode batches.
  # Compute dtype: 'float32' | 'bfloat16' (params, optimizer state and the loss stay float32).
  c.dtype = "float32"

  c.dataset = "mnist"  # A TFDS name; images are read as uint8 and scaled to [0, 1] on device.
  c.input = ml_collections.ConfigDict()
  # 'none': grey levels in [0, 1]; 'dynamic': a fresh Bernoulli sample of every pixel at every
  # step (IWAE paper; the test split uses one fixed sample); 'threshold': pixel > 0.5.
  c.input.binarize = "none"

  c.model = ml_collections.ConfigDict()
  c.model.name = "ae"  # 'ae' (deterministic code) | 'vae' (Gaussian posterior, N(0, I) prior).
  c.model.encoder = "mlp"
  c.model.hidden = (512, 256)  # Encoder widths; the decoder mirrors them.
  c.model.latents = 32
  c.model.activation = "relu"

  # Reconstruction term for 'ae': 'mse' (squared error summed over pixels) or 'bce' (Bernoulli
  # cross-entropy on the decoder's logits). 'vae' always uses the ELBO with a Bernoulli decoder.
  c.loss = "mse"

  c.opt = ml_collections.ConfigDict()
  c.opt.name = "adam"  # 'adam' | 'adamw' | 'sgd'
  c.opt.b1 = 0.9
  c.opt.b2 = 0.999
  c.opt.eps = 1e-8
  c.opt.weight_decay = 0.0  # Only used by 'adamw'.
  c.opt.grad_clip_norm = 0.0  # 0 disables clipping.

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_epochs = 1  # A checkpoint is also written after the last epoch.
  c.checkpoint.max_to_keep = 3
  return c
