r"""The reference rows of a disentanglement table, per seed: the metrics of the ground-truth
factors as the code and of pure noise as the code, on a prepared dataset with factors.

  python -m aejax.disentanglement_reference --dataset=shapes2d --data_dir=/data/tfds \
      --seeds=0,1,2 --out=/tmp/dsprites/reference.json
  python -m aejax.compare /tmp/dsprites --reference=/tmp/dsprites/reference.json \
      --metric=analysis.metrics.mig,analysis.metrics.dci_disentanglement

The same metrics, sizes and seeds as `aejax.analyze --disentanglement --seed=S` gives a run
(aejax/analysis/disentanglement/report.py); aejax.compare --reference shows them as its first
rows, mean ± std over the seeds.
"""

import json

from absl import app
from absl import flags

from aejax import cli
from aejax.analysis.disentanglement import report
from aejax.analysis.disentanglement.factor_dataset import FactorSource
from aejax.data import data_flags  # --data_dir, --manual_dir, --download.
from aejax.data import dataset
from aejax.run import storage
from aejax.errors import UserError

_DATASET = flags.DEFINE_string("dataset", "shapes2d", "Prepared dataset with ground-truth "
                               "factors (aejax.prepare_shapes names them) whose factors are drawn.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds, one set of scores each (analyze's --seed).")
_LATENTS = flags.DEFINE_integer("latents", 10, "Dimensions of the noise code (the study's "
                                "latents).")
_OUT = flags.DEFINE_string("out", None, "JSON file to write the rows to.")
flags.mark_flags_as_required(["out"])
cli.require_local_paths("out")


def reference(dataset_name: str, seeds: list[int], latents: int, scale: float, out: str, *,
              data_dir: str | None = None, manual_dir: str | None = None,
              download: bool = True) -> dict:
  """Writes `out`: {"dataset", "protocol", "rows": {reference: {"seeds", "metrics": [...]}}}."""
  report.check_scale(scale)
  if latents < 1 or not seeds:
    raise UserError(f"--latents={latents} must be >= 1 and --seeds name one seed at least")
  source = FactorSource(dataset.prepare(dataset_name, data_dir, manual_dir, download))
  per_seed = [report.reference_scores(source, s, scale, latents) for s in seeds]
  result = {"dataset": dataset_name,
            "protocol": report.protocol(
                "S", scale, f"two codes, for seeds S = {seeds}: factors as code, each factor's "
                f"index / (values - 1); noise, {latents} standard normals per image, "
                f"independent of it"),
            "rows": {name: {"seeds": seeds, "metrics": [scores[name] for scores in per_seed]}
                     for name in report.REFERENCES}}
  with storage.atomic(out) as f:
    json.dump(result, f, indent=2)
  return result


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; see --help")
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    cli.fail(f"--seeds={','.join(_SEEDS.value)} must be integers, e.g. --seeds=0,1,2")

  def write() -> None:
    reference(_DATASET.value, seeds, _LATENTS.value, report.SCALE.value, _OUT.value,
              **data_flags.values())
    print(f"Wrote {_OUT.value}; show it first with aejax.compare --reference={_OUT.value}")
  cli.run_command(write)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
