"""What the Slurm tests share: whether a Slurm is up, and what it says about a job.

The tests run against a real Slurm (CI starts one with tools/slurm_local.sh). Without one they
skip with one line saying how to start it, except in CI (CI=true), where they fail.
"""

import os
import subprocess
import time

import pytest

START = 'eval "$(tools/slurm_local.sh start)" (as root), then run pytest in that shell'


def require_slurm() -> None:
  try:
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          timeout=30)
    states = proc.stdout.split() if proc.returncode == 0 else []
  except (OSError, subprocess.TimeoutExpired):
    states = []
  if not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
    why = f"no Slurm node is up (sinfo: {states or 'none'}); start one: {START}"
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(why)


def job(job_id: str) -> dict[str, str]:
  """`scontrol show job` of a job Slurm still holds (MinJobAge: 300 s after it ends)."""
  out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                       text=True, check=True).stdout
  return dict(f.split("=", 1) for f in out.split() if "=" in f)


def queued(job_id: str) -> bool:
  """Whether a job (or any task of an array) is still in the queue."""
  out = subprocess.run(["squeue", "-h", "-r", "-j", job_id.split("_")[0], "-o", "%i"],
                       capture_output=True, text=True).stdout.split()
  return job_id in out if "_" in job_id else bool(out)


def wait_for_file_line(path: str, text: str, timeout: float = 300) -> None:
  """Polls until a line of `path` holds `text`."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.exists(path) and any(text in line for line in open(path, errors="replace")):
      return
    time.sleep(0.05)
  raise AssertionError(f"no line with {text!r} in {path} within {timeout}s")
