"""`python tests/no_tensorflow.py <main flags>`: aejax.main as if TensorFlow were not installed.

Every import finder is wrapped so that `tensorflow` is not found, exactly as on a host without it
(`sys.modules['tensorflow'] = None` would not do: TFDS treats a present key as "TF is loaded").
It prints whether any TensorFlow module got loaded, and fails if one did.
"""

import runpy
import sys


class _HideTensorFlow:

  def __init__(self, finder):
    self._finder = finder

  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] == "tensorflow":
      return None
    find_spec = getattr(self._finder, "find_spec", None)
    return find_spec(name, path, target) if find_spec else None

  def __getattr__(self, attr):
    return getattr(self._finder, attr)


sys.meta_path[:] = [_HideTensorFlow(f) for f in sys.meta_path]
sys.argv = ["aejax.main", *sys.argv[1:]]
try:
  runpy.run_module("aejax.main", run_name="__main__", alter_sys=True)
  exit_code = 0
except SystemExit as e:  # absl's app.run always ends in sys.exit.
  exit_code = e.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
print(f"TENSORFLOW_LOADED={bool(loaded)}", flush=True)
assert not loaded, f"the training path imported TensorFlow: {loaded[:3]}"
sys.exit(exit_code)
