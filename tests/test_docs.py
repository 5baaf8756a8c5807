"""The docs' commands run: every `python -m aejax...` and `./launch.sh` command in README.md and
docs/ parses as the command would parse it, the quick start trains, the flag tables are the
flag definitions and the lists the docs give of the code are the code's."""

import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO, run_aejax

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).

DOCS = [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]
EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, "experiments", "*.py")))  # Their docstrings.
COMMAND = re.compile(r"(?:python -m (aejax\.\w+)|\./launch\.sh)\b")
SHELL_END = {";", "&&", "||", "|", "&", ">", ">>", "<", "done", ")"}


def _code(text: str) -> list[str]:
  """The text of every fenced code block and of every inline code span outside them (of a
  Python file: its docstring), with backslash-continued lines joined."""
  if text.startswith(('"""', 'r"""')):
    return text.split('"""')[1].replace("\\\n", " ").splitlines()
  parts = re.split(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
  blocks = [p.replace("\\\n", " ") for p in parts[1::2]]
  spans = [s for prose in parts[::2] for s in re.findall(r"`([^`\n]+)`", prose)]
  return [line for block in blocks for line in block.splitlines()] + spans


def _words(rest: str) -> list[str]:
  """The shell words of a command's arguments, up to the end of the command."""
  lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  words = []
  for word in lexer:
    if word in SHELL_END or word.startswith("#"):
      break
    words.append(word)
  return words


def _launch_options() -> dict[str, bool]:
  """launch.sh's own options, read from its argument loop: name -> whether it takes a value."""
  source = open(os.path.join(REPO, "launch.sh")).read()
  return {name: "${2" in action for name, action in
          re.findall(r"^\s*(?:-h\|)?(--[\w-]+)\)(.*?);;", source, flags=re.M | re.S)}


def documented_commands() -> list[tuple[str, str, list[str]]]:
  """(where, module, argv) of every command with arguments; launch.sh's own options removed
  (its other arguments go to aejax.main unchanged)."""
  launch = _launch_options()
  found = []
  for path in DOCS + EXPERIMENTS:
    for line in _code(open(path).read()):
      for match in COMMAND.finditer(line):
        argv = _words(line[match.end():])
        module = match.group(1) or "aejax.main"
        if match.group(1) is None:  # ./launch.sh
          i, rest = 0, []
          while i < len(argv):
            if argv[i] == "--sbatch":  # sbatch's own options, up to `--`.
              i = argv.index("--", i) + 1 if "--" in argv[i:] else len(argv)
            elif argv[i] in launch:
              i += 1 + launch[argv[i]]
            else:
              rest.append(argv[i])
              i += 1
          argv = rest
        # A bare `python -m aejax.main` in prose names the command, and one with `...` is the
        # pattern of a command; neither is a command to run.
        if argv and "..." not in line[match.end():]:
          found.append((f"{os.path.relpath(path, REPO)}: {line.strip()[:80]}", module, argv))
  return found


def parse(module: str, argvs: list[list[str]]) -> list[str | None]:
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "parse_commands.py"), module],
                        input=json.dumps(argvs), cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_documented_command_parses(capsys):
  commands = documented_commands()
  by_module = {}
  for where, module, argv in commands:
    by_module.setdefault(module, []).append((where, argv))
  failures = []
  for module, entries in sorted(by_module.items()):
    for (where, argv), error in zip(entries, parse(module, [a for _, a in entries]), strict=True):
      if error:
        failures.append(f"{where}\n    -> {error}")
  with capsys.disabled():
    print(f"\n{len(commands)} documented commands from {len(DOCS + EXPERIMENTS)} files parsed "
          f"({', '.join(f'{m}: {len(e)}' for m, e in sorted(by_module.items()))})")
  assert len(commands) >= 40 and set(by_module) == {
      "aejax.main", "aejax.sweep", "aejax.analyze", "aejax.compare", "aejax.bench",
      "aejax.prepare_folder", "aejax.prepare_shapes", "aejax.disentanglement_reference"}
  assert not failures, "\n".join(failures)


def test_a_misspelt_flag_or_config_field_in_a_command_is_caught():
  errors = parse("aejax.main", [
      ["--config=experiments/vae.py", "--workdir=/tmp/vae", "--manual_dri=/data"],
      ["--config=experiments/vae.py", "--workdir=/tmp/vae", "--config.model.latnets=3"],
      ["--config=experiments/vae.py", "--workdir=/tmp/vae", "--config.num_epochs=0"],
      ["--config=experiments/vae.py", "--workdir=/tmp/vae", "--config.num_epochs=3"]])
  assert "manual_dri" in errors[0] and "latnets" in errors[1] and "num_epochs=0" in errors[2]
  assert errors[3] is None
  (error,) = parse("aejax.sweep", [["--config=experiments/vae.py", "--workdir=/tmp/s",
                                    "--sweep=sed=0,1"]])
  assert "'sed'" in error


def undocumented_families(names: list[str], families_md: str, readme: str) -> list[str]:
  """The names of `names` without a row `| `name` |` in the table under "## The families" of
  docs/families.md, or missing from the README's list of families."""
  table = families_md.split("\n## The families\n", 1)[1].split("\n## ", 1)[0]
  rows = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M))
  listed = next(line for line in readme.split("\n\n") if "[Model families]" in line)
  return [n for n in names if n not in rows or f"`{n}`" not in listed]


def test_every_row_of_the_families_table_has_a_docs_row_and_is_in_the_readmes_list():
  """catches: a family added to FAMILIES (here a row 'infovae') without its row in
  docs/families.md or its name in the README."""
  from aejax import families

  families_md = open(os.path.join(REPO, "docs", "families.md")).read()
  readme = open(os.path.join(REPO, "README.md")).read()
  assert undocumented_families(list(families.FAMILIES), families_md, readme) == []
  assert undocumented_families([*families.FAMILIES, "infovae"], families_md,
                               readme) == ["infovae"]


def test_the_flag_tables_are_the_flag_definitions():
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "docs_flags.py"), "--check"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert len(re.findall(r"<!-- flags: ", "".join(open(p).read() for p in DOCS))) >= 5


def test_the_test_times_list_every_test_file():
  """docs/development.md's table of test times names each test file, and no file that is gone
  (mutation seen: a test file added without regenerating the table fails here)."""
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "test_durations.py"),
                         "--check"], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr


def _generated(page: str, name: str) -> str:
  """The text between `<!-- code: name -->` and `<!-- end code -->` of docs/<page>."""
  text = open(os.path.join(REPO, "docs", page)).read()
  (block,) = re.findall(rf"<!-- code: {re.escape(name)} -->\n(.*?)<!-- end code -->", text, re.S)
  return block


def test_the_sweep_page_lists_the_per_run_hyperparameters_and_main_metrics_of_the_code():
  """docs/sweeps.md's list of per-run fields is hparams.FIELDS, and its table of default metrics
  is compare.main_metric of every family in the table (catches: a field dropped from or added to
  either the page or FIELDS, a family's metric changed on one side only)."""
  from aejax import compare
  from aejax import families
  from aejax import hparams

  fields = re.findall(r"`([^`]+)`", _generated("sweeps.md", "hparams.FIELDS"))
  assert tuple(fields) == hparams.FIELDS, (fields, hparams.FIELDS)
  rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \|$", _generated("sweeps.md", "main_metric"), re.M)
  assert dict(rows) == {f: compare.main_metric(f) for f in families.FAMILIES}, rows
  assert compare.main_metric("wae") == "sq_err" and compare.main_metric("vamp") == "elbo"


def test_the_one_class_tables_are_what_compare_prints_from_their_records():
  page = open(os.path.join(REPO, "docs", "anomaly.md")).read()
  commands = [line for line in _code(page) if "python -m aejax.compare bench/results" in line]
  assert len(commands) == 2, commands
  for line in commands:
    argv = _words(line[line.index("aejax.compare") + len("aejax.compare"):])
    proc = run_aejax(*argv, module="aejax.compare", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [r for r in proc.stdout.splitlines() if r.startswith("| (") or r.startswith("Mean")]
    assert len(rows) == 11 and all(r in page for r in rows), proc.stdout


def test_the_equal_budget_table_is_what_compare_prints_from_its_records():
  """Each README row's test NLL, ELBO and wall time are one row of aejax.compare on the records
  in bench/results/cpu/equal_budget/ (mutation: a README number changed fails it)."""
  proc = run_aejax("bench/results/cpu/equal_budget", "--metric=nll,elbo", module="aejax.compare",
                   timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = [r.strip("|").split("|") for r in proc.stdout.splitlines() if r.startswith("| ")]
  header = [c.strip() for c in table[0]]
  cols = [header.index(c) for c in ("test nll ↓", "test elbo ↑", "wall time")]
  printed = sorted(tuple(row[c].strip() for c in cols) for row in table[1:])  # Past the header.
  readme = open(DOCS[0]).read()
  section = readme[readme.index("## The likelihood models at one budget"):]
  section = section[:section.index("\n## ", 1)]
  rows = [r.strip("|").split("|") for r in section.splitlines() if r.startswith("| ")][1:]
  shown = sorted((re.sub(r"\*|\s*\(.*\)", "", r[1]).strip(), r[2].strip(), r[4].strip())
                 for r in rows)
  assert len(shown) == 9 and shown == printed, (shown, printed)
  # The prose below the table: the one-layer bounds' gaps to the VAE and their order (catches: a
  # gap or an ordering that the rows do not give, as "3-4 nats" with IWAE 2.8 below the VAE).
  nll = {}
  for r in rows:  # The first row of each model is its one-layer network.
    nll.setdefault(r[0].split(",")[0].strip(), float(re.sub(r"\*|\s*\(.*\)", "", r[1])))
  bounds = sorted(("IWAE", "MIWAE", "PIWAE", "CIWAE"), key=lambda b: nll[b])
  gaps = {b: nll["VAE"] - nll[b] for b in bounds}
  prose = " ".join(section[section.index("\n\n", section.index("| IWAE, 2 stochastic")):].split())
  assert (f"beats the VAE's {nll['VAE']:.1f} nats, by {gaps[bounds[-1]]:.1f} ({bounds[-1]}) to "
          f"{gaps[bounds[0]]:.1f} ({bounds[0]})") in prose, (gaps, prose)
  assert f"by test NLL {' < '.join(bounds)} here" in prose, (bounds, prose)


def _readme_command(module: str, workdir: str, containing: str = "") -> list[str]:
  """The README's first `python -m <module>` command holding `containing`, its /tmp/vae workdir
  replaced."""
  for line in _code(open(DOCS[0]).read()):
    if containing in line and (match := re.search(rf"python -m {re.escape(module)}\b", line)):
      return [w.replace("/tmp/vae", workdir) for w in _words(line[match.end():])]
  raise AssertionError(f"README.md shows no python -m {module} command with {containing!r}")


def test_the_quick_start_trains_analyses_and_resumes(data_dir, tmp_path):
  workdir = str(tmp_path / "vae")
  train = _readme_command("aejax.main", workdir)
  assert train == ["--config=experiments/vae.py", f"--workdir={workdir}"]
  proc = run_aejax(*train, "--config.num_epochs=1", f"--data_dir={data_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  analyze = _readme_command("aejax.analyze", workdir)
  proc = run_aejax(*analyze, "--nll_images=200", "--probe_examples=2000",
                   f"--data_dir={data_dir}", module="aejax.analyze")
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.load(open(os.path.join(workdir, "analysis", "metrics.json")))["metrics"]
  assert metrics["nll"] < 200  # An untrained Bernoulli decoder: 784 ln 2 = 543 nats.
  # The README's resume line (40 epochs) shrunk to 2: it trains only the missing epoch.
  resume = _readme_command("aejax.main", workdir, containing="--config.num_epochs=40")
  proc = run_aejax(*resume, "--config.num_epochs=2", f"--data_dir={data_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["epoch"] for r in lines if r["split"] == "test"] == [1, 2]



SAMPLE_QUALITY_COLUMNS = {  # README column -> aejax.compare's column on the records.
    "test NLL": "analysis.metrics.nll ↓", "squared error": "analysis.metrics.sq_err_per_image ↓",
    **{name: f"analysis.metrics.{key}_lenet_mnist {arrow}".strip() for name, key, arrow in (
        ("FD", "fd", "↓"), ("KID", "kid", "↓"), ("precision", "precision", "↑"),
        ("recall", "recall", "↑"), ("density", "density", ""), ("coverage", "coverage", "↑"),
        ("FD of reconstructions", "rec_fd", "↓"))}}


def test_the_sample_quality_table_is_what_compare_prints_from_its_records():
  """Each README row of the sample-quality table, its real floor first, is one row of
  aejax.compare --by=folder on the records in bench/results/cpu/sample_quality/, cell for cell
  (mutation: a README number changed, or the floor row dropped, fails it)."""
  root = "bench/results/cpu/sample_quality"
  metrics = sorted({c.split(" ")[0] for c in SAMPLE_QUALITY_COLUMNS.values()})
  proc = run_aejax(root, "--by=folder", f"--metric={','.join(metrics)}",
                   module="aejax.compare", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = [[c.strip() for c in r.strip("|").split("|")] for r in proc.stdout.splitlines()
           if r.startswith("| ")]
  header, printed = table[0], {row[0]: row for row in table[1:]}
  readme = open(DOCS[0]).read()
  section = readme[readme.index("## Sample quality of every family at one budget"):]
  section = section[:section.index("\n## ", 1)]
  rows = [[c.strip() for c in r.strip("|").split("|")] for r in section.splitlines()
          if r.startswith("| ")]
  shown_header, shown = rows[0], rows[1:]
  assert shown[0][0].startswith("real floor") and len(shown) == len(printed), (shown, printed)
  for row in shown:
    folder = re.search(r"`(\w+)`", row[0]).group(1) if "`" in row[0] else row[0]
    for name, cell in zip(shown_header[1:], row[1:]):
      assert cell == printed[folder][header.index(SAMPLE_QUALITY_COLUMNS[name])], (folder, name)
