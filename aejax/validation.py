"""Start-up checks of a config: every field's type and range, before any data or compile.

Each failure is a `UserError` naming the field, the bad value and what to use instead, so a typo
costs a second, not a crashed run. This is the one place a config is checked: the model factory,
the optimizers and the objectives take a validated config. What a family allows comes from its
entry in the table of aejax.families (its losses, likelihood, own fields and check), asked here.
"""

import difflib

import ml_collections

from aejax import configs
from aejax.data import input_pipeline
from aejax.data import views
from aejax import decoder_dists
from aejax import families
from aejax import loops
from aejax import parallel
from aejax import preprocess
from aejax.errors import UserError
from aejax.models import conv
from aejax.models import factory
from aejax import optimizers


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise UserError(message)


def _at_least(config: ml_collections.ConfigDict, path: str, low: float) -> None:
  value = configs.field(config, path)
  _check(isinstance(value, (int, float)) and not isinstance(value, bool),
         f"config.{path}={value!r} must be a number")
  _check(value >= low, f"config.{path}={value} must be >= {low}")


def _in_range(value: float, low: float, high: float, field: str, *, low_open: bool = False,
              high_open: bool = False) -> None:
  ok = (low < value if low_open else low <= value) and (value < high if high_open else
                                                        value <= high)
  interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
  _check(ok, f"config.{field}={value} must be in {interval}")


def _one_of(value: str, choices, field: str) -> None:
  _check(value in choices, f"unknown config.{field}={value!r}; use one of {tuple(choices)}")


def validate_fields(config: ml_collections.ConfigDict, source: str) -> None:
  """`config` (what the experiment file `source` gives) has only fields of configs.base(): a
  field that is not one would be stored in config.json and read by nothing, as a --config.<field>
  override naming no field is refused."""
  from aejax.run import rundir  # The one flattening of a config's fields.

  fields = rundir.flatten(configs.base().to_dict())
  for path in rundir.flatten(config.to_dict()):
    if path not in fields:
      close = difflib.get_close_matches(path, fields, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise UserError(f"{source}: config.{path} is no field of the base config{hint}; fix the "
                      f"experiment file (the fields are those of aejax/configs.py)")


def validate_config(config: ml_collections.ConfigDict, device_count: int) -> None:
  for path in ("batch_size", "eval_batch_size", "num_epochs", "eval_every_epochs",
               "model.latents", "checkpoint.every_epochs", "checkpoint.max_to_keep"):
    _at_least(config, path, 1)
  for path in ("seed", "steps_per_call", "opt.weight_decay", "opt.grad_clip_norm", "opt.eps",
               "input.noise_level", "objective.beta", "objective.kl_warmup_steps",
               "objective.l1_code", "objective.sparsity_weight", "objective.commitment",
               "eval_num_samples", "eval_memory_bytes"):
    _at_least(config, path, 0)
  for path in ("eval_sample_chunk", "model.num_samples", "model.num_bounds",
               "model.codebook_size", "model.code_dim"):
    _at_least(config, path, 1)
  _check(config.learning_rate > 0, f"config.learning_rate={config.learning_rate} must be > 0")
  for b in ("b1", "b2", "momentum"):
    _in_range(config.opt[b], 0, 1, f"opt.{b}", high_open=True)
  for divisor_of in ("batch_size", "eval_batch_size"):
    _check(config[divisor_of] % device_count == 0,
           f"config.{divisor_of}={config[divisor_of]} is not divisible by the {device_count} "
           f"devices; use a multiple of {device_count}")
  _one_of(config.parallel, parallel.MODES, "parallel")
  _one_of(config.loop, loops.LOOPS, "loop")
  _one_of(config.group_runs, loops.GROUP_RUNS, "group_runs")
  _one_of(config.input_mode, input_pipeline.INPUT_MODES, "input_mode")
  _at_least(config, "input_workers", 0)
  _one_of(config.dtype, factory.DTYPES, "dtype")
  _one_of(config.input.binarize, preprocess.BINARIZE, "input.binarize")
  _one_of(config.model.name, families.FAMILIES, "model.name")
  _one_of(config.model.encoder, factory.ENCODERS, "model.encoder")
  _one_of(config.model.conv_impl, conv.CONV_IMPLS, "model.conv_impl")
  _one_of(config.model.activation, factory.ACTIVATIONS, "model.activation")
  _one_of(config.opt.name, optimizers.NAMES, "opt.name")
  _one_of(config.opt.schedule, optimizers.SCHEDULES, "opt.schedule")
  _check(len(config.model.hidden) > 0 and all(
      isinstance(w, int) and w >= 1 for w in config.model.hidden),
         f"config.model.hidden={tuple(config.model.hidden)} must be positive layer widths")
  _one_of(config.model.code_activation, factory.CODE_ACTIVATIONS, "model.code_activation")
  _one_of(config.input.corruption, preprocess.CORRUPTION, "input.corruption")
  _check(len(config.model.channels) > 0 and all(
      isinstance(c, int) and c >= 1 for c in config.model.channels),
         f"config.model.channels={tuple(config.model.channels)} must be positive conv widths")
  _check(all(isinstance(w, int) and w >= 1 for w in config.model.conv_dense),
         f"config.model.conv_dense={tuple(config.model.conv_dense)} must be positive layer widths")
  # Their form here; whether a crop fits the images waits for the dataset's stored shape
  # (views.View.shape, from the metadata, before any image is decoded).
  views.from_config(config)
  _validate_decoder(config)
  _validate_schedule(config)
  _validate_objective(config)
  _validate_family(config)


def _validate_decoder(config: ml_collections.ConfigDict) -> None:
  m = config.model
  _one_of(m.decoder_dist, decoder_dists.DISTS, "model.decoder_dist")
  _at_least(config, "model.decoder_std", 0)
  _check(not m.decoder_std or m.decoder_dist == "gaussian",
         f"config.model.decoder_std={m.decoder_std} is the fixed std of "
         f"config.model.decoder_dist='gaussian'; set it to 0.0 for {m.decoder_dist!r}")
  _at_least(config, "model.decoder_components", 1)
  _check(m.decoder_components == 1 or m.decoder_dist == "logistic",
         f"config.model.decoder_components={m.decoder_components} is the mixture size of "
         f"config.model.decoder_dist='logistic'; set it to 1 for {m.decoder_dist!r}")
  _check(m.decoder_dist == "bernoulli" or families.FAMILIES[m.name].LIKELIHOOD,
         f"config.model.decoder_dist={m.decoder_dist!r} is the likelihood of a VAE family; model "
         f"{m.name!r} trains on config.loss ('mse' or 'bce'): leave decoder_dist='bernoulli'")


def _validate_schedule(config: ml_collections.ConfigDict) -> None:
  opt = config.opt
  if opt.schedule != "stages":
    return
  _at_least(config, "opt.stages", 1)
  _at_least(config, "opt.stage_growth", 1)
  _in_range(opt.stage_decay, 0, 1, "opt.stage_decay", low_open=True)
  total = sum(opt.stage_growth ** i for i in range(opt.stages))
  # Training past the last stage would silently keep its rate; stopping early skips stages.
  _check(config.num_epochs == total,
         f"config.num_epochs={config.num_epochs} does not match the 'stages' schedule of "
         f"{total} epochs; set --config.num_epochs={total} or change config.opt.stages")


def _validate_objective(config: ml_collections.ConfigDict) -> None:
  """Config combinations the objectives cannot honour."""
  if config.input.corruption == "mask":
    _in_range(config.input.noise_level, 0, 1, "input.noise_level (a masking probability here)",
              high_open=True)
  _in_range(config.objective.sparsity_target, 0, 1, "objective.sparsity_target", low_open=True,
            high_open=True)


def _validate_family(config: ml_collections.ConfigDict) -> None:
  """What the family's entry in the table (aejax.families) allows."""
  name = config.model.name
  family = families.FAMILIES[name]
  _check(config.loss in family.LOSSES, f"config.loss={config.loss!r} does not fit "
         f"config.model.name={name!r}; use one of {family.LOSSES}")
  _check(not (config.eval_num_samples and not family.LIKELIHOOD),
         f"config.eval_num_samples estimates a VAE's NLL; model {name!r} has no likelihood: "
         f"set it to 0")
  owners: dict[str, list[str]] = {}  # Each field another family owns -> all its owners.
  for owner, other in families.FAMILIES.items():
    for path in other.OWN_FIELDS:
      owners.setdefault(path, []).append(owner)
  for path, names in owners.items():
    if path in family.OWN_FIELDS:  # This family's too (as a variant owns its base's fields).
      continue
    off, value = families.FAMILIES[names[0]].OWN_FIELDS[path], configs.field(config, path)
    models = (f"model {names[0]!r}" if len(names) == 1 else
              f"models {', '.join(map(repr, names[:-1]))} and {names[-1]!r}")
    _check(value == off, f"config.{path}={value!r} applies to {models}, not {name!r}; set it "
           f"to {off!r}")
  problem = family.check(config)
  _check(problem is None, problem)


def validate_image_shape(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
  """The model of `config` can round-trip images of `image_shape`."""
  if config.model.encoder == "conv":
    problem = conv.check_image_shape(tuple(config.model.channels), image_shape)
    _check(problem is None, problem)


def validate_data(config: ml_collections.ConfigDict, num_train: int) -> None:
  _check(config.batch_size <= num_train, f"config.batch_size={config.batch_size} exceeds the "
         f"{num_train} training images; use a smaller batch")


def validate_train_labels(config: ml_collections.ConfigDict, num_classes: int,
                          num_selected: int | None = None) -> None:
  """config.input.train_labels: distinct existing labels leaving at least one batch of images.

  Called once with the dataset's class count, then with `num_selected`, the training images of
  those labels (known only after the labels are read).
  """
  labels = config.input.train_labels
  if labels is None:
    return
  field = f"config.input.train_labels={tuple(labels)!r}"
  _check(len(labels) > 0, f"{field} is empty; name at least one label, e.g. \"(1,)\", or leave "
         f"it unset to train on every label")
  _check(all(isinstance(v, int) and not isinstance(v, bool) for v in labels),
         f"{field} must hold integer labels, e.g. \"(1,)\" or \"(0, 2)\"")
  missing = sorted(v for v in set(labels) if not 0 <= v < num_classes)
  _check(not missing, f"{field} names labels {missing} that {config.dataset} does not have; use "
         f"labels in 0..{num_classes - 1}")
  repeated = sorted(v for v in set(labels) if labels.count(v) > 1)
  _check(not repeated, f"{field} repeats {repeated}; name each label once")
  _check(num_selected is None or num_selected >= config.batch_size,
         f"{field} leaves {num_selected} training images, fewer than config.batch_size="
         f"{config.batch_size}; add labels or use a smaller batch")
