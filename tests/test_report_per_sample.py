"""Per-sample tables: the families' columns, their directions and the rank."""

import json

import jax
import numpy as np
import pytest

from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.report import per_sample
from gendiag.report import registry
from gendiag.report import write
from gendiag.report.families import fld as fld_family
from gendiag.report.families import gel as gel_family
from gendiag.report.families import mmd as mmd_family
from gendiag.report.families import precision_recall as pr_family

COPIED = np.array([5, 17, 42])       # training rows the model copies
COPY_ROWS = np.array([10, 20, 30])   # where the copies sit in the model
OUTLIER = 50                         # a generated row far off the real data


def _info(name, side="generated", higher=True):
  return registry.ColumnInfo(name, "test", side, higher, "a test column")


def test_suspicion_ranks_closed_form():
  cols = {"a": registry.sample_column(_info("a"), [3.0, 1.0, 2.0, 0.0]),
          "b": registry.sample_column(_info("b", higher=False), [5.0, 7.0],
                                      rows=[1, 2]),
          "idx": registry.sample_column(_info("idx", higher=None),
                                        [9, 8, 7, 6])}
  suspicion, rank = per_sample.suspicion_ranks(cols, 5)
  # a: mid-rank percentiles (r - 1/2) / 4 of 3,1,2,0 -> 7/8, 3/8, 5/8, 1/8;
  # b (lower = suspicious) on rows 1, 2: 5 -> 3/4, 7 -> 1/4; idx unranked.
  np.testing.assert_allclose(suspicion[:4], [7 / 8, (3 / 8 + 3 / 4) / 2,
                                             (5 / 8 + 1 / 4) / 2, 1 / 8])
  assert np.isnan(suspicion[4])                  # no column scored row 4
  np.testing.assert_array_equal(rank, [1, 2, 3, 4, 5])


def test_ties_share_their_rank_and_bad_columns_are_rejected():
  flags = registry.sample_column(_info("f"), [0, 1, 1, 0])
  suspicion, rank = per_sample.suspicion_ranks({"f": flags}, 4)
  np.testing.assert_allclose(suspicion, [0.25, 0.75, 0.75, 0.25])
  np.testing.assert_array_equal(rank, [3, 1, 2, 4])   # ties by row index
  with pytest.raises(ValueError, match="non-finite"):
    per_sample.suspicion_ranks(
        {"n": registry.sample_column(_info("n"), [np.nan, 1.0])}, 2)
  with pytest.raises(ValueError, match="one row index per value"):
    registry.sample_column(_info("x"), [1.0, 2.0], rows=[0])
  with pytest.raises(ValueError, match="side"):
    registry.ColumnInfo("x", "test", "both", True, "")
  assert _info("x", higher=False).direction == "lower = more suspicious"
  assert _info("x", higher=None).direction == "info"


def _inputs():
  rng = np.random.default_rng(0)
  draw = lambda n: np.float32(rng.normal(size=(n, 4)))
  train, test, real = draw(100), draw(100), draw(120)
  gen = draw(90)
  gen[COPY_ROWS] = train[COPIED]
  gen[OUTLIER] = 12.0
  config = {
      "seed": 0,
      "precision_recall": dict(prd_runs=1, prd_clusters=5, classifier_runs=1,
                               classifier_steps=20, num_resamples=10),
      "fld": dict(num_seeds=1, num_resamples=10, data_copying=False,
                  max_epochs=5),
      "gel": dict(num_witnesses=8, num_permutations=9, num_resamples=2,
                  max_samples=80),
      "mmd": dict(num_permutations=9, num_resamples=5, max_samples=100)}
  return EvalInputs(real=real, generated={"m": gen},
                    real_labels=rng.integers(0, 2, 120), train=train,
                    test=test, config=config)


@pytest.fixture(scope="module")
def tables():
  inputs = _inputs()
  key = jax.random.key(0)
  outputs = {name: fam.FAMILY.fn(inputs, jax.random.fold_in(key, i))
             for i, (name, fam) in enumerate([
                 ("precision_recall", pr_family), ("fld", fld_family),
                 ("gel", gel_family), ("mmd", mmd_family)])}
  return inputs, outputs, per_sample.sample_tables(inputs, outputs)


def test_tables_shapes_and_directions(tables):
  inputs, _, t = tables
  g, r = t["m"]["generated"], t["m"]["real"]
  assert (g.num_rows, r.num_rows) == (90, 120)
  assert {"realism", "off_real_manifold", "real_balls", "memorization_score",
          "nn_ratio", "nearest_train", "mmd_witness"} <= set(g.columns)
  assert {"uncovered", "outside_generated_manifold",
          "mmd_witness_real"} <= set(r.columns)
  assert g.columns["realism"].info.direction == "lower = more suspicious"
  assert g.columns["memorization_score"].info.higher_is_suspicious
  assert g.columns["nearest_train"].info.higher_is_suspicious is None
  assert r.columns["uncovered"].info.higher_is_suspicious
  assert g.columns["nn_ratio"].info.threshold == pytest.approx(1 / 3)
  # MMD caps the real set at 100 rows (the model's 90 all enter), GEL both
  # at 80: their columns cover only the rows they used.
  np.testing.assert_array_equal(g.columns["mmd_witness"].rows, np.arange(90))
  np.testing.assert_array_equal(r.columns["mmd_witness_real"].rows,
                                report.subsample_index(inputs, "real", 120,
                                                       100))
  assert np.isnan(r.full("mmd_witness_real")).sum() == 20
  for table, name, set_name, n in (
      (g, "gel_generated_weight", "m", 90), (r, "gel_real_weight", "real",
                                             120)):
    if name in table.columns:   # only from a SOLVED fit
      np.testing.assert_array_equal(table.columns[name].rows,
                                    report.subsample_index(inputs, set_name,
                                                           n, 80))
  assert np.all(np.isfinite(g.suspicion)) and sorted(g.rank) == list(
      range(1, 91))


def test_copies_and_outlier_top_their_columns(tables):
  _, _, t = tables
  g = t["m"]["generated"]
  assert set(g.most_suspicious("nn_ratio", 3)) == set(COPY_ROWS)
  assert set(g.most_suspicious("memorization_score", 3)) == set(COPY_ROWS)
  np.testing.assert_array_equal(
      g.full("nearest_train")[COPY_ROWS].astype(int), COPIED)
  np.testing.assert_allclose(g.full("nn_ratio")[COPY_ROWS], 0.0, atol=1e-6)
  assert g.most_suspicious("realism", 1)[0] == OUTLIER
  assert g.full("off_real_manifold")[OUTLIER] == 1.0
  assert g.full("real_balls")[OUTLIER] == 0.0
  # Far from every other row, the witness is the self-term -k(t, t) / m.
  np.testing.assert_allclose(g.full("mmd_witness")[OUTLIER], -1 / 90,
                             atol=1e-5)
  # The combined rank averages unrelated columns (its copy ratio is
  # unremarkable), so the outlier is near, not at, the top.
  assert g.rank[OUTLIER] <= 18


def test_json_and_npz_forms_agree(tables, tmp_path, monkeypatch):
  _, _, t = tables
  content = json.loads(json.dumps(per_sample.samples_dict(t),
                                  allow_nan=False))
  col = content["models"]["m"]["generated"]["columns"]["realism"]
  assert col["direction"] == "lower = more suspicious"
  np.testing.assert_allclose(col["values"],
                             t["m"]["generated"].columns["realism"].values)
  capped = content["models"]["m"]["real"]["columns"]["mmd_witness_real"]
  assert len(capped["rows"]) == len(capped["values"]) == 100
  assert write.write_samples(str(tmp_path), t) == {
      "file": "samples.json", "format": "json"}
  monkeypatch.setattr(per_sample, "JSON_MAX_ROWS", 10)
  meta = write.write_samples(str(tmp_path), t)
  assert meta["format"] == "npz"
  index = json.load(open(tmp_path / "samples.json"))
  arrays = np.load(tmp_path / "samples.npz")
  entry = index["models"]["m"]["generated"]["columns"]["realism"]
  np.testing.assert_array_equal(arrays[entry["values"]],
                                t["m"]["generated"].columns["realism"].values)
  np.testing.assert_array_equal(arrays[index["models"]["m"]["generated"][
      "rank"]], t["m"]["generated"].rank)


def test_a_column_twice_or_out_of_range_is_an_error():
  inputs = EvalInputs(real=np.zeros((4, 2), np.float32),
                      generated={"m": np.zeros((3, 2), np.float32)})
  a, b = registry.FamilyOutput(), registry.FamilyOutput()
  a.add_column("m", _info("x"), [1.0, 2.0, 3.0])
  b.add_column("m", _info("x"), [1.0, 2.0, 3.0])
  with pytest.raises(ValueError, match="comes twice"):
    per_sample.sample_tables(inputs, {"a": a, "b": b})
  c = registry.FamilyOutput()
  c.add_column("m", _info("y", side="real"), [1.0], rows=[4])
  with pytest.raises(ValueError, match="outside the 4 real rows"):
    per_sample.sample_tables(inputs, {"c": c})
  assert per_sample.sample_tables(inputs, {"none": registry.FamilyOutput()
                                           }) == {}
