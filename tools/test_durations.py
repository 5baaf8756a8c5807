"""Writes docs/development.md's table of each test file's time from a full run's pytest output.

  .ci/run 2>&1 | tee ci.log                  # the suite with --durations=0 --durations-min=0
  python tools/test_durations.py ci.log      # rewrites the table in place
  python tools/test_durations.py --check     # exit 1 when a test file is missing from the table
                                             # or the table names a file that is gone

A file's time is the sum of its tests' setup, call and teardown durations (`--durations=0`
prints each), so a module fixture counts once, in the file that builds it; under `--dist
loadfile` one worker runs the whole file, so this is the time the file holds its worker. The
table sits between `<!-- test durations -->` and `<!-- end test durations -->`, slowest first.
A file over three minutes must say why in a paragraph of its module docstring that starts with
"Time:"; the table quotes it, and the script refuses a file that has none.
"""

import ast
import collections
import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "development.md")
MARKER = re.compile(r"(<!-- test durations -->\n)(.*?)(<!-- end test durations -->)", re.S)
DURATION = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+((tests/[\w/]+\.py)::\S+)", re.M)
SUMMARY = re.compile(r"^=*\s*((?:\d+ failed, )?\d+ passed.*?) in ([\d.]+)s", re.M)
ROW_FILE = re.compile(r"^\| `(tests/[\w/]+\.py)` \|", re.M)
SLOW_S = 180


def test_files() -> list[str]:
  return sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "tests", "test_*.py")))


def why_slow(path: str) -> str | None:
  """The "Time:" paragraph of the file's module docstring, on one line."""
  doc = ast.get_docstring(ast.parse(open(os.path.join(REPO, path)).read())) or ""
  for paragraph in doc.split("\n\n"):
    if paragraph.startswith("Time:"):
      return " ".join(paragraph[len("Time:"):].split())
  return None


def table(log: str) -> str:
  seconds = collections.Counter()
  counts = collections.Counter()
  for value, phase, _, path in DURATION.findall(log):
    seconds[path] += float(value)
    counts[path] += phase == "call"
  summary = SUMMARY.findall(log)
  if not seconds or not summary:
    sys.exit("test_durations.py: no `--durations=0` lines or no pytest summary in the log; "
             "run the suite as .ci/run does and pass its output")
  missing = sorted(set(test_files()) - set(seconds))
  if missing:
    sys.exit(f"test_durations.py: the log has no time for {', '.join(missing)}; pass the log "
             "of a full run of the suite")
  result, wall = summary[-1]
  lines = [f"Measured by `.ci/run` on a clean clone: {result} in {float(wall) / 60:.1f} min of "
           f"wall time on 2 workers; each file's time is what it held its worker.", "",
           "| test file | tests | time | why over three minutes |", "|---|---:|---:|---|"]
  for path, total in sorted(seconds.items(), key=lambda kv: -kv[1]):
    why = ""
    if total > SLOW_S:
      why = why_slow(path)
      if why is None:
        sys.exit(f"test_durations.py: {path} took {total:.0f} s; say why in a paragraph of its "
                 "module docstring starting with 'Time:'")
    lines.append(f"| `{path}` | {counts[path]} | {total:.0f} s | {why} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
  text = open(DOC).read()
  match = MARKER.search(text)
  if match is None:
    sys.exit(f"test_durations.py: no `<!-- test durations -->` block in {DOC}")
  if argv[1:] == ["--check"]:
    listed = set(ROW_FILE.findall(match.group(2)))
    stale = sorted(listed ^ set(test_files()))
    if stale:
      print(f"docs/development.md's test times are stale ({', '.join(stale)}): regenerate "
            "them with `python tools/test_durations.py LOG` from a full run", file=sys.stderr)
      return 1
    return 0
  if len(argv) != 2:
    sys.exit(__doc__)
  new = MARKER.sub(lambda m: m.group(1) + table(open(argv[1]).read()) + m.group(3), text)
  open(DOC, "w").write(new)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
