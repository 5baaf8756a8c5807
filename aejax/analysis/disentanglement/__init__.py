"""disentanglement_lib's metrics on numpy codes: a ground-truth source, a representation
function (a model's encoder means) and a seed in, floats out.

source.py: the source protocol, sampling and binning; intervention.py: beta-VAE and FactorVAE
scores; information.py: MIG, modularity and explicitness; predictors.py: DCI and SAP.
"""

from aejax.analysis.disentanglement.information import mig
from aejax.analysis.disentanglement.information import modularity_explicitness
from aejax.analysis.disentanglement.intervention import beta_vae_score
from aejax.analysis.disentanglement.intervention import factor_vae_score
from aejax.analysis.disentanglement.predictors import dci
from aejax.analysis.disentanglement.predictors import sap
from aejax.analysis.disentanglement.source import GroundTruth
from aejax.analysis.disentanglement.source import MetricInputError

METRICS = {
    "beta_vae": beta_vae_score,
    "factor_vae": factor_vae_score,
    "mig": mig,
    "dci": dci,
    "sap": sap,
    "modularity_explicitness": modularity_explicitness,
}


def all_metrics(source, representation_fn, seed: int = 0,
                sizes: dict[str, dict[str, int]] | None = None) -> dict[str, float]:
  """Every metric, as {"metric/score": value}, at the reference's sample sizes or at `sizes`
  ({metric: {argument: size}}, e.g. {"mig": {"num_train": 100}}; arguments not given keep
  their defaults).

  Each metric draws from its own RandomState(seed), as disentanglement_lib evaluates each metric
  in a separate run with `evaluation.random_seed = 0` (evaluation/evaluate.py).
  """
  sizes = sizes or {}
  return {f"{name}/{key}": value for name, metric in METRICS.items()
          for key, value in metric(source, representation_fn, int(seed),
                                   **sizes.get(name, {})).items()}


__all__ = ["GroundTruth", "METRICS", "MetricInputError", "all_metrics", "beta_vae_score", "dci",
           "factor_vae_score", "mig", "modularity_explicitness", "sap"]
