"""The benchmark's markdown says what it did not measure (never `nan`)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = """
import json, sys
sys.path.insert(0, "experiments")
from benchmarks import runner
print(runner._markdown(json.loads(sys.argv[1])))
"""


def _markdown(results):
  done = subprocess.run(
      [sys.executable, "-c", _SCRIPT, json.dumps(results)], cwd=ROOT,
      capture_output=True, text=True, check=True)
  return done.stdout


def test_memory_only_run_says_the_matmul_rate_was_not_measured():
  job = {"peak_rss_bytes": 3 * 2**30, "single_call_s": 300.0,
         "memory_only": True, "sizes": {"n": 10}}
  text = _markdown({"main_job_10k": job})
  assert "nan" not in text.lower()
  assert "not measured (only memory-only cases ran)" in text
  assert "| main_job_10k | n=10 | 300.00 | (one call only) |  | 3.00 |" in text


def test_timed_run_reports_the_matmul_rate():
  case = {"peak_rss_bytes": 2**30, "single_call_s": 1.0, "first_call_s": 1.0,
          "warm_median_s": 0.5, "reference_matmul_flops_per_s": 1.5e11,
          "sizes": {"n": 10}}
  text = _markdown({"mmd": case})
  assert "150.0 GFLOP/s" in text
  assert "not measured" not in text


def test_main_job_tables_give_seconds_and_peak_memory_per_family():
  job = {"peak_rss_bytes": 3 * 2**30, "single_call_s": 300.0,
         "memory_only": True, "sizes": {"n": 10},
         "details": {"family_seconds": {"kid": 30.0, "fid": 20.0},
                     "family_peak_rss_gib": {"kid": 2.75, "fid": 1.5},
                     "job_seconds": 290.0}}
  text = _markdown({"main_job_10k": job})
  assert "| main_job_10k | 20.0 | 30.0 | 290.0 | 3.00 |" in text  # run order
  assert "| main_job_10k | 1.50 | 2.75 |" in text
  assert "(GB)" not in text  # sizes are GiB (2**30 bytes) and say so
