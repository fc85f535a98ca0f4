"""Sharded blocked ops equal the single-device path on 4 forced CPU devices."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sharded_equals_single_device():
  env = dict(os.environ,
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                        + " --xla_force_host_platform_device_count=4"),
             PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, "-m", "tests.sharding_check"],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "sharding checks passed" in proc.stdout
