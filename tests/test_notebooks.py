"""Every notebook under colabs/ runs top to bottom at smoke sizes.

Each notebook is executed by nbclient in a fresh IPython kernel started
with this interpreter (`sys.executable`, through a kernelspec written to a
temporary directory, so a system-wide "python3" kernel cannot be picked
up), with GENDIAG_SMOKE=1, the repository root on PYTHONPATH (gendiag
importable without installing it) and a temporary working directory (the
notebooks write their files there). New notebooks are picked up by the
glob. Committed notebooks must hold no outputs.
"""

import glob
import json
import os
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client import kernelspec  # noqa: E402  (after the skips)
from jupyter_client import manager  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "colabs", "*.ipynb")))
KERNEL_NAME = "gendiag-test-python"
# A guard against hangs, not a speed test: the notebooks take about a minute
# at smoke sizes on an idle 2-core machine, and shared CI machines are slower.
CELL_TIMEOUT_S = 600


def _kernel_manager(tmp_path):
  """An AsyncKernelManager whose only kernelspec runs sys.executable."""
  spec_dir = tmp_path / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
               "{connection_file}"],
      "display_name": "gendiag tests", "language": "python"}))
  specs = kernelspec.KernelSpecManager(
      kernel_dirs=[str(tmp_path / "kernels")])
  return manager.AsyncKernelManager(kernel_name=KERNEL_NAME,
                                    kernel_spec_manager=specs)


def _kernel_env():
  env = dict(os.environ)
  env["GENDIAG_SMOKE"] = "1"
  env["PYTHONPATH"] = os.pathsep.join(
      [ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  env["MPLBACKEND"] = "Agg"   # no display; figures are still built
  return env


def test_notebooks_are_found():
  assert NOTEBOOKS, "no notebooks under colabs/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_committed_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs, f"{path}: cell has stored outputs"
      assert cell.execution_count is None, f"{path}: execution count stored"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  workdir = tmp_path / "cwd"
  workdir.mkdir()
  client = nbclient.NotebookClient(
      nb, km=_kernel_manager(tmp_path), kernel_name=KERNEL_NAME,
      timeout=CELL_TIMEOUT_S, allow_errors=False,
      resources={"metadata": {"path": str(workdir)}})
  # cleanup_kc: shut the kernel down afterwards (nbclient keeps a kernel it
  # did not create alive, ~0.8 GB idle per notebook until the worker exits).
  client.execute(env=_kernel_env(), cleanup_kc=True)
  # Every code cell ran (an error would have raised CellExecutionError).
  ran = [c.execution_count for c in nb.cells if c.cell_type == "code"]
  assert all(n is not None for n in ran)
