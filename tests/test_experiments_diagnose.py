"""The main job end to end (smoke config) and the report registry."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import diagnose as diagnose_config
from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.experiments import diagnose
from tests.test_report_verdicts import ALSO_ALLOWED
from tests.test_report_verdicts import SIGNS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# smoke_run: tests/conftest.py (one run shared with test_intervals).


def test_writes_schema_and_files(smoke_run):
  workdir, metrics = smoke_run
  assert set(metrics) >= {"meta", "models", "families"}
  assert metrics["meta"]["seed"] == 0
  assert set(metrics["models"]) == {"good", "dropped", "imbalanced",
                                    "memorized", "blurred", "shrunk"}
  assert metrics["meta"]["data"].startswith("embedded default (digits")
  for model in metrics["models"].values():
    for e in model.values():
      assert set(e) >= {"value", "ci"}
  for family in metrics["families"].values():
    for fig in family["figures"]:
      assert os.path.getsize(os.path.join(workdir, fig)) > 1000
  text = open(os.path.join(workdir, "report.md")).read()
  assert "| good |" in text and "kid.png" in text and "## Verdicts" in text
  assert "Feature space: digits_net features of scikit-learn's" in text
  html = open(os.path.join(workdir, "index.html")).read()
  assert "<table>" in html and 'src="kid.png"' in html
  assert set(metrics["verdicts"]) == set(metrics["models"])


def test_failures_separate_from_the_control(smoke_run):
  _, metrics = smoke_run
  m = metrics["models"]
  for bad in ["dropped", "imbalanced", "shrunk"]:
    assert m[bad]["kid"]["value"] > m["good"]["kid"]["value"]
    assert m[bad]["mmd2"]["value"] > m["good"]["mmd2"]["value"]
  assert m["shrunk"]["fid"]["value"] > m["good"]["fid"]["value"]
  assert m["blurred"]["fid"]["value"] > m["good"]["fid"]["value"]


def test_digits_default_inputs_follow_eval_inputs_semantics():
  config = diagnose_config.get_config("smoke")
  inputs = diagnose.build_inputs(config, jax.random.key(0))
  n_real, n_train, n_test = (len(inputs.real), len(inputs.train),
                             len(inputs.test))
  assert n_real + n_train + n_test < 1797 and inputs.real.shape[1] == 64
  assert inputs.images["real"].shape == (n_real, 8, 8)
  assert inputs.images["train"].shape == (n_train, 8, 8)
  for name, feats in inputs.generated.items():
    assert inputs.images[name].shape == (len(feats), 8, 8)
    assert inputs.generated_labels[name].shape == (len(feats),)
    assert inputs.failures[name]
  # No digit is in two of real / train / test (pixels identify rows; sklearn
  # digits has a few exact duplicates, hence the small tolerance).
  as_set = lambda x: {r.tobytes() for r in x}
  real, train, test = (as_set(inputs.images[k])
                       for k in ("real", "train", "test"))
  assert len(real & train) + len(real & test) + len(train & test) <= 3
  good = as_set(inputs.images["good"])
  assert len(good & (real | train | test)) <= 3
  mem = as_set(inputs.images["memorized"])
  assert len(mem & train) >= 0.45 * len(inputs.generated["memorized"])


def test_cas_in_the_report_catches_dropped_classes(smoke_run):
  workdir, metrics = smoke_run
  m = metrics["models"]
  assert m["dropped"]["cas"]["zero_classes"] == [3, 8]
  assert m["good"]["cas"]["zero_classes"] == []
  assert "never recognises classes 3, 8" in metrics["verdicts"]["dropped"]
  assert os.path.getsize(os.path.join(workdir, "cas_samples.png")) > 1000


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_mixture_default_is_still_available(tmp_path):
  config = diagnose_config.get_config("smoke")
  config.default.data = "mixture"
  config.metrics = "fid,cas"
  out = diagnose.run(config, str(tmp_path))
  assert set(out["models"]) == {"good", "dropped", "imbalanced",
                                "memorized", "noisy", "shrunk"}
  assert out["models"]["dropped"]["cas"]["zero_classes"] == [3, 8]
  config.default.data = "cifar"
  with pytest.raises(ValueError, match="digits' or 'mixture"):
    diagnose.run(config, str(tmp_path / "w"))


def test_reproducible_for_a_seed(tmp_path, smoke_run):
  _, first = smoke_run
  config = diagnose_config.get_config("smoke")
  config.metrics = "kid,fid"
  again = diagnose.run(config, str(tmp_path))
  for model in first["models"]:
    assert again["models"][model]["kid"] == first["models"][model]["kid"]


def test_user_files_and_validation(tmp_path, rng):
  real = np.float32(rng.normal(size=(120, 5)))
  np.save(tmp_path / "real.npy", real)
  np.save(tmp_path / "a.npy", real + 0.5)
  np.savez(tmp_path / "b.npz", f=np.float32(rng.normal(size=(100, 5))))
  config = diagnose_config.get_config("smoke")
  config.real = str(tmp_path / "real.npy")
  config.generated = f"a={tmp_path}/a.npy,b={tmp_path}/b.npz:f"
  config.kid.subset_size = 50
  config.metrics = "fid,kid"  # file loading is the point, not the families
  out = diagnose.run(config, str(tmp_path / "w"))
  assert out["models"]["a"]["fid"]["value"] > out["models"]["b"]["fid"]["value"]
  config.generated = f"a={tmp_path}/missing.npy"
  with pytest.raises(ValueError, match="no such file"):
    diagnose.run(config, str(tmp_path / "w2"))
  config.real = ""
  with pytest.raises(ValueError, match="config.real"):
    diagnose.run(config, str(tmp_path / "w3"))


def test_family_missing_needs_is_skipped_with_note(tmp_path):
  def _family(inputs, key):  # pylint: disable=unused-argument
    raise AssertionError("must not run")
  family = report.Family("_needs_train_test_only", _family,
                         needs=("train", "test"))
  inputs = EvalInputs(real=np.zeros((4, 2), np.float32),
                      generated={"m": np.ones((4, 2), np.float32)})
  out = report.run_families(inputs, None, ["_needs_train_test_only"],
                            registry={family.name: family})
  assert "skipped" in out["_needs_train_test_only"].notes[0]
  with pytest.raises(ValueError, match="unknown metric families"):
    report.select("fid,nope", report.REGISTRY)


def test_binary_runs_and_rejects_unknown_config_keys(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "diagnose.py"),
         f"--workdir={tmp_path}",
         f"--config={os.path.join(ROOT, 'configs', 'diagnose.py')}:smoke",
         "--config.metrics=fid"]
  subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert list(metrics["models"]["good"]) == ["fid", "fid_mean_term",
                                             "fid_trace_term"]
  bad = subprocess.run(cmd + ["--config.nonexistent=1"], capture_output=True,
                       cwd=tmp_path)
  assert bad.returncode != 0


def test_verdicts_name_each_failure_and_only_it(smoke_run):
  """tests/test_report_verdicts.py's contract on the smoke run (that file is slow).

  The control gets no finding; each model's verdict uses its failure's
  words and no other model's (except the overlaps ALSO_ALLOWED lists).
  """
  verdicts = smoke_run[1]["verdicts"]
  assert verdicts["good"].startswith("no failure detected"), verdicts["good"]
  for model, signs in SIGNS.items():
    for sign in signs:
      assert sign in verdicts[model], (model, verdicts[model])
    for other, other_signs in SIGNS.items():
      for sign in other_signs:
        if other != model and model not in ALSO_ALLOWED.get(sign, ()):
          assert sign not in verdicts[model], (model, other, verdicts[model])
  assert "does not cover classes 3, 8" in verdicts["dropped"]
  assert "never recognises classes 3, 8" in verdicts["dropped"]
