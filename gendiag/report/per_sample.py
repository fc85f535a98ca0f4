"""One per-sample view across families: `sample_tables` and its JSON forms.

Every family stores what it already computes per row in
`FamilyOutput.per_sample` (a `registry.SampleColumn` per quantity: values
over the rows it scored, with the row indices, and a `ColumnInfo` saying
which way is suspicious). `sample_tables` joins them into, per model, one
table over its generated samples and one over the real rows.

Combined rank. For a column whose direction is known, the suspicion rank of
a scored row is its mid-rank percentile among the column's scored rows,
oriented so that 1 is the most suspicious:

  u_c(i) = (rank_c(i) - 1/2) / r_c,  rank_c = average ranks of s_c(i),
  s_c = v_c if higher values are suspicious, else -v_c,

(ties share their average rank, so a 0/1 flag gives two levels). A row's
`suspicion` is the mean of u_c(i) over the columns that scored it (capped
families score a subsample: their columns are left out for the other rows,
never filled in); `rank` orders the rows by suspicion, 1 = most suspicious
(ties by row index); rows no column scored have suspicion NaN and come
last. Columns without a direction (indices, distances kept for reference)
are carried but not ranked.
"""

import dataclasses
from typing import Dict, Mapping, Tuple

import numpy as np
from scipy import stats

from gendiag.data.inputs import EvalInputs
from gendiag.report.registry import FamilyOutput
from gendiag.report.registry import SampleColumn
from gendiag.report.registry import SIDES

# Above this many rows over all tables, the main job writes samples.npz
# (arrays) and a JSON index instead of one samples.json.
JSON_MAX_ROWS = 50_000


@dataclasses.dataclass(frozen=True)
class SampleTable:
  """The per-sample columns of one side of one model, and their rank.

  Attributes:
    model: the model's name.
    side: 'generated' (rows = the model's samples) or 'real'.
    num_rows: rows on this side.
    columns: column name -> SampleColumn (values over the rows it scored).
    suspicion: (num_rows,) mean suspicion rank in (0, 1) (module doc);
      NaN for rows no ranked column scored.
    rank: (num_rows,) 1 = most suspicious row.
  """
  model: str
  side: str
  num_rows: int
  columns: Dict[str, SampleColumn]
  suspicion: np.ndarray
  rank: np.ndarray

  def full(self, name: str) -> np.ndarray:
    """Column `name` over all rows, NaN where it scored none."""
    col = self.columns[name]
    out = np.full(self.num_rows, np.nan)
    out[col.rows] = col.values
    return out

  def most_suspicious(self, name: str, count: int) -> np.ndarray:
    """Rows of the `count` most suspicious values of column `name`.

    Ties are broken by the combined suspicion, then the row index.
    """
    col = self.columns[name]
    if col.info.higher_is_suspicious is None:
      raise ValueError(f"column {name!r} has no direction; pick a ranked "
                       "column.")
    s = col.values if col.info.higher_is_suspicious else -col.values
    order = np.lexsort((col.rows, -np.nan_to_num(
        self.suspicion[col.rows], nan=-1.0), -s))
    return col.rows[order[:count]]

  def to_dict(self) -> dict:
    """JSON-ready: metadata, values, row indices, suspicion and rank."""
    return {
        "num_rows": self.num_rows,
        "columns": {name: dict(_info_dict(c), values=_floats(c.values),
                               rows=c.rows.tolist())
                    for name, c in self.columns.items()},
        "suspicion": _floats(self.suspicion),
        "rank": self.rank.tolist()}


def _floats(x):
  """Floats with None for NaN (JSON has no NaN); integral values as ints."""
  x = np.asarray(x, np.float64)
  return [None if not np.isfinite(v) else (int(v) if v == int(v) else
                                           float(v)) for v in x]


def _info_dict(col: SampleColumn) -> dict:
  i = col.info
  return {"family": i.family, "direction": i.direction,
          "description": i.description, "threshold": i.threshold}


def suspicion_ranks(columns: Mapping[str, SampleColumn], num_rows: int
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """(suspicion (num_rows,), rank (num_rows,)) of the module doc."""
  total, count = np.zeros(num_rows), np.zeros(num_rows)
  for col in columns.values():
    if col.info.higher_is_suspicious is None or not len(col.values):
      continue
    s = col.values if col.info.higher_is_suspicious else -col.values
    if not np.all(np.isfinite(s)):
      raise ValueError(f"column {col.info.name!r} has non-finite values; a "
                       "family must leave unscored rows out (rows=...).")
    total[col.rows] += (stats.rankdata(s) - 0.5) / len(s)
    count[col.rows] += 1
  with np.errstate(invalid="ignore"):
    suspicion = np.where(count > 0, total / np.maximum(count, 1), np.nan)
  order = np.lexsort((np.arange(num_rows),
                      -np.nan_to_num(suspicion, nan=-1.0)))
  rank = np.empty(num_rows, np.int64)
  rank[order] = np.arange(1, num_rows + 1)
  return suspicion, rank


def sample_tables(inputs: EvalInputs, outputs: Mapping[str, FamilyOutput]
                  ) -> Dict[str, Dict[str, SampleTable]]:
  """Per model, its 'generated' and 'real' `SampleTable` (module doc).

  Args:
    inputs: the run's inputs (row counts of each set).
    outputs: {family: FamilyOutput}, as `run_families` returns them.

  Returns:
    {model: {'generated': SampleTable, 'real': SampleTable}} for the models
    some family gave per-sample columns, in the order of
    `inputs.generated`.
  """
  tables = {}
  for model, features in inputs.generated.items():
    sides = {s: {} for s in SIDES}
    for family, out in outputs.items():
      for side, cols in out.per_sample.get(model, {}).items():
        for name, col in cols.items():
          if name in sides[side]:
            raise ValueError(f"per-sample column {name!r} of {model!r} "
                             f"comes twice (again from {family!r}); give "
                             "columns unique names.")
          sides[side][name] = col
    if not any(sides.values()):
      continue
    sizes = {"generated": len(features), "real": len(inputs.real)}
    tables[model] = {}
    for side, cols in sides.items():
      for col in cols.values():
        if len(col.rows) and (col.rows.min() < 0
                              or col.rows.max() >= sizes[side]):
          raise ValueError(f"column {col.info.name!r} of {model!r} indexes "
                           f"rows outside the {sizes[side]} {side} rows.")
      suspicion, rank = suspicion_ranks(cols, sizes[side])
      tables[model][side] = SampleTable(model, side, sizes[side], cols,
                                        suspicion, rank)
  return tables


def samples_dict(tables: Mapping[str, Mapping[str, SampleTable]]) -> dict:
  """samples.json's content: {"models": {model: {side: table dict}}}."""
  return {"rank": "suspicion = mean over ranked columns of the row's "
                  "mid-rank percentile (1 = most suspicious); rank 1 = most "
                  "suspicious row",
          "models": {m: {s: t.to_dict() for s, t in sides.items()}
                     for m, sides in tables.items()}}


def samples_arrays(tables: Mapping[str, Mapping[str, SampleTable]]
                   ) -> Tuple[dict, Dict[str, np.ndarray]]:
  """(index, arrays) for large n: arrays keyed 'model/side/name[/rows]'.

  The index is `samples_dict` with every list replaced by the key of its
  array in `arrays` (written as samples.npz).
  """
  index, arrays = {"models": {}}, {}
  for m, sides in tables.items():
    index["models"][m] = {}
    for s, t in sides.items():
      base = f"{m}/{s}"
      arrays[f"{base}/suspicion"], arrays[f"{base}/rank"] = (t.suspicion,
                                                             t.rank)
      cols = {}
      for name, c in t.columns.items():
        arrays[f"{base}/{name}"], arrays[f"{base}/{name}/rows"] = (c.values,
                                                                   c.rows)
        cols[name] = dict(_info_dict(c), values=f"{base}/{name}",
                          rows=f"{base}/{name}/rows")
      index["models"][m][s] = {"num_rows": t.num_rows, "columns": cols,
                               "suspicion": f"{base}/suspicion",
                               "rank": f"{base}/rank"}
  index["rank"] = samples_dict({})["rank"]
  return index, arrays


def total_rows(tables: Mapping[str, Mapping[str, SampleTable]]) -> int:
  """Rows over every table (JSON or npz: `JSON_MAX_ROWS`)."""
  return sum(t.num_rows for sides in tables.values() for t in sides.values())
