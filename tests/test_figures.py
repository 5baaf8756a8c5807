"""The analysis figures plot metrics only."""

from matplotlib.axes import Axes
import pytest

from aejax.analysis import figures

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


def test_curves_plot_metrics_not_the_record_fields(tmp_path, monkeypatch):
  titles = []
  monkeypatch.setattr(Axes, "set_title", lambda self, t, *a, **k: titles.append(t))
  records = [{"step": 10, "epoch": 1, "split": "train", "time": 1.7e9, "loss": 3.0,
              "grad_norm": 1.0, "examples_per_sec": 5.0},
             {"step": 10, "epoch": 1, "split": "test", "time": 1.7e9, "loss": 2.5}]
  figures.curves(str(tmp_path / "curves.png"), records)
  assert titles == ["loss"]
