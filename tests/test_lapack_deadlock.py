"""Bootstrap refits never run batched LAPACK calls side by side.

jaxlib 0.10 spreads a batched Cholesky/eigh/SVD over XLA:CPU's intra-op
pool and waits for it; two such calls running at once on a 2-thread pool
wait for each other forever. The FID bootstrap of the main job hung that way
(n = 537, m = 400, d = 64, four vmapped replicates at a time) until its
replicates ran one at a time. Run in a subprocess with a timeout so that a
regression fails instead of hanging the suite.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import jax, numpy as np
from gendiag.metrics import frechet
rng = np.random.default_rng(0)
real = np.float32(rng.normal(size=(537, 64)))
for i in range(3):
  gen = np.float32(rng.normal(size=(400, 64)))
  np.asarray(frechet.fid_term_replicates(real, gen, jax.random.key(i),
                                         num_resamples=50))
  np.asarray(frechet.fid_bootstrap(real, gen, key=jax.random.key(i),
                                   num_resamples=50).replicates)
print("done")
"""


def test_fid_bootstrap_on_two_intra_op_threads_finishes():
  env = dict(os.environ, PYTHONPATH=ROOT, NPROC="2")  # XLA:CPU's pool size
  proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().endswith("done")
