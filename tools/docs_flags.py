"""Writes the flag tables of docs/*.md from the absl flag definitions, and the lists the docs
state of the code from the code, so they cannot drift.

  python tools/docs_flags.py           # rewrites every table in place
  python tools/docs_flags.py --check   # exit 1 naming the pages whose tables are out of date

A table sits between `<!-- flags: COMMAND [MODULE ...] -->` and `<!-- end flags -->`: COMMAND is
imported (it defines its flags and imports the modules that define the rest), and the table lists
the flags defined by COMMAND and each MODULE, in that order. Between `<!-- code: NAME -->` and
`<!-- end code -->` sits what the snippet GENERATED[NAME] prints: `hparams.FIELDS` (the per-run
hyperparameters of a vectorised group) or `main_metric` (aejax.compare's default metric of each
family in the table of aejax.families).
"""

import glob
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"(<!-- flags: ([\w. ]+?) -->\n)(.*?)(<!-- end flags -->)", re.S)
CODE_MARKER = re.compile(r"(<!-- code: ([\w.]+) -->\n)(.*?)(<!-- end code -->)", re.S)
GENERATED = {
    "hparams.FIELDS": """
from aejax import hparams
print(", ".join(f"`{f}`" for f in hparams.FIELDS))
""",
    "main_metric": """
from aejax import compare, families
print("| `config.model.name` | default metric |")
print("|---|---|")
for name in sorted(families.FAMILIES):
  print(f"| `{name}` | `{compare.main_metric(name)}` |")
""",
}
# Run in a fresh process per command: main and analyze both define --workdir.
LIST_FLAGS = """
import importlib, json, sys
from absl import flags
importlib.import_module(sys.argv[1])
by_module = flags.FLAGS.flags_by_module_dict()
print(json.dumps([[f.name, f.default_as_str, " ".join(f.help.split()), f.boolean]
                  for m in sys.argv[1:] for f in by_module.get(m, [])]))
"""


def table(modules: list[str]) -> str:
  out = subprocess.run([sys.executable, "-c", LIST_FLAGS, *modules], cwd=REPO, check=True,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
  rows = ["| flag | default | meaning |", "|---|---|---|"]
  for name, default, help_text, boolean in json.loads(out.stdout):
    shown = (default or "None").strip("'")
    shown = "none" if shown in ("None", "") else shown
    flag = f"`--[no]{name}`" if boolean else f"`--{name}`"
    rows.append(f"| {flag} | {shown} | {help_text.replace('|', '/')} |")
  return "\n".join(rows) + "\n"


def generated(name: str) -> str:
  if name not in GENERATED:
    raise SystemExit(f"<!-- code: {name} --> names nothing; use one of {sorted(GENERATED)}")
  return subprocess.run([sys.executable, "-c", GENERATED[name]], cwd=REPO, check=True,
                        capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": REPO}).stdout


def render(text: str) -> str:
  text = MARKER.sub(lambda m: m.group(1) + table(m.group(2).split()) + m.group(4), text)
  return CODE_MARKER.sub(lambda m: m.group(1) + generated(m.group(2)) + m.group(4), text)


def pages() -> list[str]:
  return sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def main(argv: list[str]) -> int:
  stale = []
  for page in pages():
    text = open(page).read()
    new = render(text)
    if new != text:
      stale.append(os.path.relpath(page, REPO))
      if "--check" not in argv:
        with open(page, "w") as f:
          f.write(new)
  if stale and "--check" in argv:
    print(f"generated tables out of date in {', '.join(stale)}: run python tools/docs_flags.py",
          file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
