"""The base config every experiment file starts from.

Experiment files (`experiments/*.py`) call `base()` and change a few fields, so every experiment
has the same keys and `--config.<key>=<value>` works the same everywhere. `load_experiment` is
the one way an experiment file is loaded.
"""

import importlib.util
import os
import traceback

from absl import flags
import ml_collections
from ml_collections import config_flags


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 128  # Global batch, split across all devices of all processes.
  c.num_epochs = 10
  c.learning_rate = 1e-3
  c.eval_every_epochs = 1  # The test split is also evaluated after the last epoch.
  c.eval_batch_size = 1000  # Global; the test split is padded (and masked) to a multiple of it.
  # VAEs: test NLL by importance sampling with this many posterior samples (the IWAE bound;
  # 0 = off), drawn in chunks of at most eval_sample_chunk, fewer where chunk x eval batch
  # decoded images would take more than eval_memory_bytes (the same NLL for any chunk).
  c.eval_num_samples = 0
  c.eval_sample_chunk = 100
  # Bytes of device memory the evaluation's decoded samples may take, e.g. 4e9; 0: a quarter of
  # the device's memory (memory.device_memory_bytes: $AEJAX_DEVICE_MEMORY_BYTES, the device's
  # limit, or the host's memory for CPU devices).
  c.eval_memory_bytes = 0.0
  # Train steps per jit call (a lax.scan); 0 = a whole epoch. Smaller values let a SIGTERM stop
  # (and checkpoint) sooner; the result is the same either way.
  c.steps_per_call = 0
  # How the steps of a call execute: 'auto' (a host loop over one jitted step for conv models on
  # CPU, whose convolutions XLA:CPU runs slowly inside loops; a lax.scan elsewhere) | 'scan' |
  # 'unroll' (the scan unrolled) | 'host'. All give the same result.
  c.loop = "auto"
  # How a vectorised group (aejax.sweep --vectorize) runs its runs' steps in its one program:
  # 'vmap' (each op batched over the run axis) | 'unroll' (each run's step written out once, as
  # a run alone's; compile time grows with the group; one device only). Same result either way;
  # unrolled is faster for space_to_depth convolutions on CPU (measured in docs/sweeps.md).
  c.group_runs = "vmap"

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
  # The TFDS splits trained on and evaluated on, any TFDS split string: e.g. 'train[:90%]' and
  # 'train[90%:]' hold out a tenth of the training split for validation.
  c.input.train_split = "train"
  c.input.test_split = "test"
  # What the model sees of each image (docs/datasets.md): a centre crop, then a resize (PIL
  # bilinear, antialiased), e.g. CelebA's --config.input.crop=140 --config.input.resize=64. One
  # size is a square, "(H, W)" a rectangle; unset or 0: off.
  c.input.crop = ml_collections.FieldReference(None, field_type=tuple)
  c.input.resize = ml_collections.FieldReference(None, field_type=tuple)
  # 'none': grey levels in [0, 1]; 'dynamic': a fresh Bernoulli sample of every pixel at every
  # step (IWAE paper; the test split uses one fixed sample); 'threshold': pixel > 0.5.
  c.input.binarize = "none"
  # Denoising: the model sees a corrupted input and is scored against the clean one.
  # 'none' | 'gaussian' (adds N(0, noise_level^2)) | 'mask' (zeroes each pixel w.p. noise_level).
  c.input.corruption = "none"
  c.input.noise_level = 0.0
  # Labels the training split is restricted to, e.g. --config.input.train_labels="(1,)" trains
  # on the images of digit 1 only (one-class anomaly detection); unset (None): every label. The
  # epoch length follows the restricted split, and the test metrics of metrics.jsonl are computed
  # on the test images of these labels; aejax.analyze scores the whole test split.
  c.input.train_labels = ml_collections.FieldReference(None, field_type=tuple)

  c.model = ml_collections.ConfigDict()
  # 'ae' (deterministic code) | 'vae' (Gaussian posterior, N(0, I) prior) | 'vqvae' | 'wae'
  # (MMD to an N(0, I) prior) | 'rae' (regularised decoder) | 'beta_tcvae' | 'vamp' (VAE with a
  # VampPrior) | 'hvae' (two stochastic layers) | 'dip_vae' | 'annealed_vae' (capacity-annealed
  # beta-VAE); docs/families.md.
  c.model.name = "ae"
  c.model.encoder = "mlp"
  c.model.hidden = (512, 256)  # Encoder widths; the decoder mirrors them.
  c.model.latents = 32
  c.model.hidden2 = ()  # 'hvae': widths of q(z2|z1)'s MLP from z1; p(z1|z2)'s mirrors them.
  c.model.latents2 = 0  # 'hvae': size of the top stochastic layer z2 (model.latents: z1's).
  c.model.activation = "relu"
  c.model.channels = (32, 64)  # encoder='conv': conv widths, each halving H, W; decoder mirrors.
  # encoder='conv': widths of dense layers between the convs and the code (the decoder mirrors
  # them); () maps the convs' features to the code directly.
  c.model.conv_dense = ()
  # encoder='conv': how each stride-2 4x4 (transposed) conv is computed, on the same parameters:
  # 'strided' as such, or 'space_to_depth' (space-to-depth then a stride-1 2x2 conv; transposed:
  # a stride-1 3x3 conv then depth-to-space). space_to_depth measured 2.7x (batch 128) and 6x
  # (batch 1024) the strided form's examples/s on an H100 (README, Speed).
  c.model.conv_impl = "space_to_depth"
  c.model.code_activation = "none"  # 'ae' only: 'sigmoid' squashes the code into (0, 1).
  # The decoder's distribution p(x|z) (aejax.decoder_dists), for families with a likelihood:
  # 'bernoulli' (binary pixels) | 'gaussian' | 'logistic' (discretised to 256 levels, for 8-bit
  # images). The AE families' reconstruction is config.loss and keeps 'bernoulli'.
  c.model.decoder_dist = "bernoulli"
  c.model.decoder_std = 0.0  # 'gaussian': a fixed standard deviation; 0 learns one per pixel.
  c.model.decoder_components = 1  # 'logistic': > 1 is a mixture of that many logistics.
  # 'vae', 'vamp', 'hvae' with loss 'iwae' | 'miwae' | 'piwae' | 'ciwae' (those listing it):
  # posterior samples K of each bound, and ('miwae', 'piwae') the bounds M averaged: M x K
  # samples per training example.
  c.model.num_samples = 1
  c.model.num_bounds = 1
  c.model.num_pseudo = 500  # 'vamp': K, the learned pseudo-inputs of the VampPrior's mixture.
  c.model.codebook_size = 512  # 'vqvae': codes in the codebook.
  c.model.code_dim = 8  # 'vqvae': the code is latents / code_dim vectors of this size.
  # 'flow_vae': the posterior's flow, 'planar' | 'radial' | 'iaf', its steps, and IAF's MADE
  # hidden widths (its context from the encoder is as wide as the first).
  c.model.flow = "none"
  c.model.flow_length = 0
  c.model.flow_hidden = ()

  # Reconstruction term for 'ae': 'mse' (squared error summed over pixels) or 'bce' (Bernoulli
  # cross-entropy on the decoder's logits). 'vae' (Bernoulli decoder): 'elbo' | 'iwae' | 'miwae' |
  # 'piwae' | 'ciwae', the bounds of docs/families.md.
  c.loss = "mse"

  c.objective = ml_collections.ConfigDict()  # Weights of the terms added to the loss.
  c.objective.beta = 1.0  # 'vae': weight of the KL term (beta-VAE).
  c.objective.kl_warmup_steps = 0  # 'vae': the KL weight rises linearly from 0 to beta.
  c.objective.ciwae_beta = 0.0  # 'vae' with loss 'ciwae': weight of the ELBO, in [0, 1].
  c.objective.l1_code = 0.0  # 'ae': L1 penalty on the code.
  c.objective.sparsity_weight = 0.0  # 'ae': KL(target || mean activation) per code unit.
  c.objective.sparsity_target = 0.05  # Target mean activation of a (sigmoid) code unit.
  c.objective.commitment = 0.25  # 'vqvae': weight of the commitment term.
  c.objective.mmd_weight = 0.0  # 'wae': lambda, weight of the MMD between codes and N(0, I).
  c.objective.code_l2 = 0.0  # 'rae': weight of ||z||^2 / 2.
  c.objective.decoder_reg = 0.0  # 'rae': weight of the decoder regulariser rae_reg names.
  c.objective.rae_reg = "l2"  # 'rae': 'l2' (decoder weight decay) | 'gp' (||dD(z)/dz||_F^2).
  c.objective.tc_alpha = 1.0  # 'beta_tcvae': weight of the index-code mutual information.
  c.objective.tc_beta = 1.0  # 'beta_tcvae': weight of the total correlation.
  c.objective.tc_gamma = 1.0  # 'beta_tcvae': weight of the dimension-wise KL.
  c.objective.dip_type = "i"  # 'dip_vae': 'i' (Cov of the encoder means) | 'ii' (of q(z)).
  c.objective.dip_lambda_od = 0.0  # 'dip_vae': weight of the squared off-diagonal covariances.
  c.objective.dip_lambda_d = 0.0  # 'dip_vae': weight of the squared diagonal's distance from 1.
  c.objective.capacity_gamma = 0.0  # 'annealed_vae': gamma, weight of |KL - C|.
  c.objective.capacity_max = 0.0  # 'annealed_vae': c_max, the final target KL C in nats.
  c.objective.capacity_steps = 0  # 'annealed_vae': C rises linearly from 0 over these steps.

  c.opt = ml_collections.ConfigDict()
  c.opt.name = "adam"  # 'adam' | 'adamw' | 'sgd'
  c.opt.b1 = 0.9  # 'adam', 'adamw': decay of the first moment.
  c.opt.b2 = 0.999  # 'adam', 'adamw': decay of the second moment.
  c.opt.momentum = 0.0  # 'sgd' only: heavy-ball momentum (0 = plain SGD).
  c.opt.eps = 1e-8
  c.opt.weight_decay = 0.0  # Only used by 'adamw'.
  c.opt.grad_clip_norm = 0.0  # 0 disables clipping.
  # 'constant' | 'cosine' (from learning_rate to 0 over num_epochs) | 'stages': stage i lasts stage_growth^i epochs at learning_rate *
  # stage_decay^i, for i < stages (Burda et al. 2015: 3^i epochs, decay 10^(-1/7), 8 stages).
  c.opt.schedule = "constant"
  c.opt.stages = 8
  c.opt.stage_growth = 3
  c.opt.stage_decay = 10 ** (-1 / 7)

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_epochs = 1  # A checkpoint is also written after the last epoch.
  c.checkpoint.max_to_keep = 3
  return c


def mlp_vae(latents: int = 20) -> ml_collections.ConfigDict:
  """784-500-latents MLP VAE (the Flax VAE example's shape), Bernoulli decoder, ELBO, dynamic
  binarisation: experiments/vae.py and the VAE variants built on it."""
  c = base()
  c.model.name = "vae"
  c.model.hidden = (500,)
  c.model.latents = latents
  c.loss = "elbo"
  c.input.binarize = "dynamic"
  c.num_epochs = 30
  return c


def dsprites(name: str = "vae") -> ml_collections.ConfigDict:
  """The setting of disentanglement_lib's study (Locatello et al. 2019) on the dSprites-like
  shapes (docs/disentanglement.md): its conv encoder/decoder (4 stride-2 4x4 convs of 32, 32, 64,
  64, dense 256, 10 latents; the decoder the mirror), Bernoulli decoder on the 0/1 pixels, Adam
  at 1e-4 (b1 0.9, b2 0.999, eps 1e-8), batches of 64, one split (the study trains and scores on
  all of it). Its 300,000 steps are 26 epochs of the full grid."""
  c = base()
  c.dataset = "shapes2d"
  c.input_mode = "stream"
  c.input.test_split = "train"
  c.model.name = name
  c.loss = "elbo"
  c.model.encoder = "conv"
  c.model.channels = (32, 32, 64, 64)
  c.model.conv_dense = (256,)
  c.model.latents = 10
  c.batch_size = 64
  c.learning_rate = 1e-4
  c.num_epochs = 26
  return c


def with_conv(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The conv encoder/decoder pair (two stride-2 convs of 32 and 64 channels) in place of the
  MLP (model.hidden is then unused)."""
  c.model.encoder = "conv"
  c.model.channels = (32, 64)
  return c


def burda2015(num_samples: int) -> ml_collections.ConfigDict:
  """Burda, Grosse & Salakhutdinov (2015), MNIST, one stochastic layer: 784-200-200-50 tanh
  encoder, mirror decoder, dynamic binarisation, Adam (b1 0.9, b2 0.999, eps 1e-4) with batches
  of 20 and 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7. k = 1 trains the ELBO (their VAE)."""
  c = base()
  c.model.name = "vae"
  c.model.hidden = (200, 200)
  c.model.latents = 50
  c.model.activation = "tanh"
  c.input.binarize = "dynamic"
  c.loss = "elbo" if num_samples == 1 else "iwae"
  c.model.num_samples = num_samples
  c.batch_size = 20
  c.eval_batch_size = 100  # 100 images x 100 samples per chunk: 10k decoder passes at a time.
  c.eval_num_samples = 5000  # Their test NLL estimate.
  c.eval_every_epochs = 100  # k = 5000 costs 5000 decoder passes per test image.
  c.checkpoint.every_epochs = 10
  c.learning_rate = 1e-3
  c.opt.eps = 1e-4
  c.opt.schedule = "stages"
  c.num_epochs = schedule_epochs(c.opt)
  return c


def burda2015_two_layers(num_samples: int) -> ml_collections.ConfigDict:
  """burda2015 with their two stochastic layers ('hvae'): 784-200-200-100 (z1) -100-100-50 (z2)
  tanh inference networks, the generative ones mirrored."""
  c = burda2015(num_samples)
  c.model.name = "hvae"
  c.model.latents, c.model.hidden2, c.model.latents2 = 100, (100, 100), 50
  return c


def field(config: ml_collections.ConfigDict, path: str):
  """The value at a dotted path, e.g. field(config, 'objective.beta')."""
  for part in path.split("."):
    config = config[part]
  return config


def schedule_epochs(opt: ml_collections.ConfigDict) -> int:
  """Total epochs of the 'stages' schedule: sum of stage_growth^i for i < stages."""
  return sum(opt.stage_growth ** i for i in range(opt.stages))


def load_experiment(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of the experiment file at `path` ('file.py' or 'file.py:arg').

  The one loader of experiment files (aejax.main, aejax.sweep, aejax.bench). A file that does not
  load, or sets a field that configs.base() lacks, is a UserError naming the file, the line and
  the error, not a traceback.
  """
  from aejax.errors import UserError

  filename, _, arg = path.partition(":")
  if not os.path.isfile(filename):
    raise UserError(f"cannot load --config={filename}: no such file; pass an experiment file "
                    f"such as experiments/vae.py")
  name = "aejax_experiment_" + os.path.splitext(os.path.basename(filename))[0]
  try:
    spec = importlib.util.spec_from_file_location(name, filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(*([arg] if arg else []))
  except SyntaxError as e:
    raise UserError(f"{e.filename}:{e.lineno}: SyntaxError: {e.msg}; fix the experiment "
                    f"file") from e
  except Exception as e:  # Anything its code raises: the deepest line of the file itself.
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(filename)]
    where = f"{filename}:{frames[-1].lineno}" if frames else filename
    detail = " ".join(str(e).split())
    raise UserError(f"{where}: {type(e).__name__}: {detail}; fix the experiment file") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"{filename}: get_config() returned {type(config).__name__}, not a "
                    f"ConfigDict; return the config (e.g. configs.base() with changes)")
  from aejax import validation  # It reads this module's base().
  validation.validate_fields(config, filename)
  return config


class ExperimentFileParser(flags.ArgumentParser):
  """The `--config=<file>` flag's parser: loads through `load_experiment`, locks the config."""

  def parse(self, argument):
    config = load_experiment(argument)
    config.lock()
    return config

  def flag_type(self):
    return "config object"


def define_config_flag(flag_values: flags.FlagValues = flags.FLAGS,
                       sys_argv: list[str] | None = None) -> flags.FlagHolder:
  """`--config=<experiment file>` with `--config.<field>=<value>` overrides (ml_collections)."""
  holder = config_flags.DEFINE_config_file(
      "config", None, "Experiment file, e.g. experiments/vae.py.", flag_values=flag_values,
      lock_config=True, sys_argv=sys_argv)
  flag_values["config"].parser = ExperimentFileParser()
  return holder
