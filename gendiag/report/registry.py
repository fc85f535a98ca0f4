"""The metric-family registry: `Family`, `FamilyOutput`, `entry`, and running
the selected families (`select`, `run_families`).

The families themselves are `gendiag.report.families.FAMILIES`, an explicit
ordered tuple; `REGISTRY` there maps their names to them, and `select` and
`run_families` take it as `registry`.
"""

import dataclasses
import math
import sys
import time
import zlib
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from absl import logging
import jax
from matplotlib.figure import Figure
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.data.inputs import NEEDS
from gendiag.report import result_cache


SIDES = ("generated", "real")


@dataclasses.dataclass(frozen=True)
class ColumnInfo:
  """What one per-sample column means (`FamilyOutput.per_sample`).

  Attributes:
    name: the column's name, unique across families (e.g. 'realism').
    family: the family that computed it.
    side: 'generated' (one value per row of the model's samples) or 'real'
      (one per real row).
    higher_is_suspicious: True when a higher value is more suspicious,
      False when a lower one is; None for a column that is not a suspicion
      score (e.g. the index of the nearest training row), which the
      combined rank leaves out.
    description: one sentence, shown in the report and samples.json.
    threshold: the value at which the family flags a row, if it has one.
  """
  name: str
  family: str
  side: str
  higher_is_suspicious: Optional[bool]
  description: str
  threshold: Optional[float] = None

  def __post_init__(self):
    if self.side not in SIDES:
      raise ValueError(f"side must be one of {SIDES}; got {self.side!r}.")

  @property
  def direction(self) -> str:
    """'higher = more suspicious', 'lower = more suspicious' or 'info'."""
    if self.higher_is_suspicious is None:
      return "info"
    return ("higher" if self.higher_is_suspicious else "lower") + (
        " = more suspicious")


@dataclasses.dataclass(frozen=True)
class SampleColumn:
  """One per-sample column of one model: values over the rows it scored.

  Attributes:
    info: the column's `ColumnInfo`.
    values: (r,) float64 values, one per scored row.
    rows: (r,) int64 indices into the side's rows (the model's samples or
      the real set) of the scored rows; all rows in order when the family
      scored every row. A family that capped a set scores only its
      subsample's rows, and the column covers only those.
  """
  info: ColumnInfo
  values: np.ndarray
  rows: np.ndarray


def sample_column(info: ColumnInfo, values, rows=None) -> SampleColumn:
  """A `SampleColumn`; `rows` None = every row, in order."""
  values = np.asarray(values, np.float64).reshape(-1)
  rows = (np.arange(len(values)) if rows is None
          else np.asarray(rows, np.int64).reshape(-1))
  if len(rows) != len(values):
    raise ValueError(f"column {info.name!r}: {len(values)} values for "
                     f"{len(rows)} rows; pass one row index per value.")
  return SampleColumn(info, values, rows)


@dataclasses.dataclass
class FamilyOutput:
  """What a family returns: per-model metric entries, figures, notes.

  Attributes:
    metrics: model -> {metric: entry}.
    figures: file name (e.g. 'kid.png') -> matplotlib Figure.
    notes: sentences shown under the family's table.
    sections: markdown blocks shown after the table (e.g. ranked lists).
    findings: model -> short plain-language findings for its verdict.
    seconds: the family's wall time (set by `run_families`).
    peak_rss_bytes: the process's peak resident memory when the family
      finished (`peak_rss_bytes`, set by `run_families`): the first family
      whose value reaches the run's maximum set that peak.
    per_sample: model -> {'generated': {column: SampleColumn}, 'real':
      {column: SampleColumn}}: what the family already computed per row
      (`add_column`); `gendiag.report.per_sample` joins them.
  """
  metrics: Dict[str, Dict[str, dict]] = dataclasses.field(default_factory=dict)
  figures: Dict[str, Figure] = dataclasses.field(default_factory=dict)
  notes: List[str] = dataclasses.field(default_factory=list)
  sections: List[str] = dataclasses.field(default_factory=list)
  findings: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
  seconds: Optional[float] = None
  peak_rss_bytes: Optional[int] = None
  per_sample: Dict[str, Dict[str, Dict[str, SampleColumn]]] = (
      dataclasses.field(default_factory=dict))

  def add_column(self, model: str, info: ColumnInfo, values, rows=None):
    """Stores one per-sample column of `model` (see `sample_column`)."""
    sides = self.per_sample.setdefault(model, {s: {} for s in SIDES})
    sides[info.side][info.name] = sample_column(info, values, rows)


@dataclasses.dataclass(frozen=True)
class Family:
  """A metric family: `fn(inputs, key) -> FamilyOutput` and what it needs.

  Attributes:
    name: the family's name (metrics.json, report sections, `select`).
    fn: the family function; it sees every model at once.
    needs: the optional `EvalInputs` fields it needs (among `NEEDS`); a
      family whose needs are missing is skipped with a note.
    description: shown under the family's heading in the report.
  """
  name: str
  fn: Callable[[EvalInputs, jax.Array], FamilyOutput]
  needs: Sequence[str] = ()
  description: str = ""

  def __post_init__(self):
    unknown = set(self.needs) - set(NEEDS)
    if unknown:
      raise ValueError(
          f"unknown needs {sorted(unknown)}; choose from {NEEDS}.")
    object.__setattr__(self, "needs", tuple(self.needs))


def by_name(families: Sequence[Family]) -> Dict[str, Family]:
  """{name: family} of `families`, in their order; a name twice is an error."""
  out = {}
  for family in families:
    if family.name in out:
      raise ValueError(f"metric family {family.name!r} is registered twice.")
    out[family.name] = family
  return out


def entry(value, ci=None, *, reference: Optional[dict] = None,
          **extra) -> dict:
  """A JSON-ready metric entry {"value": float, "ci": [lo, hi] or None}.

  `reference`, when given, is the entry (built by `entry`) of held-out real
  data scored like the model at its sample size; it is stored under
  "reference" and shown beside the value.
  """
  out = {"value": number(value),
         "ci": None if ci is None else [number(c) for c in ci]}
  out.update({k: jsonable(v) for k, v in extra.items()})
  if reference is not None:
    out["reference"] = reference
  return out


def number(x):
  """`x` as a Python float; None when it is not finite (JSON has no NaN)."""
  x = float(np.asarray(x))
  return x if math.isfinite(x) else None


def jsonable(x):
  """`x` with arrays and numpy scalars turned into Python lists and numbers."""
  if isinstance(x, (np.ndarray, jax.Array, np.generic)):
    a = np.asarray(x)
    return a.item() if a.ndim == 0 else a.tolist()
  if isinstance(x, dict):
    return {k: jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  return x


def family_key(key: jax.Array, name: str) -> jax.Array:
  """A key for one family, stable across runs and independent of order."""
  return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def select(names, registry: Mapping[str, Family]) -> List[Family]:
  """Families of `registry` named by `names`: 'all', 'a,b' or a sequence."""
  if isinstance(names, str):
    names = list(registry) if names == "all" else [
        s.strip() for s in names.split(",") if s.strip()]
  unknown = [n for n in names if n not in registry]
  if unknown:
    raise ValueError(f"unknown metric families {unknown}; registered: "
                     f"{sorted(registry)}.")
  return [registry[n] for n in names]


def peak_rss_bytes() -> Optional[int]:
  """The process's peak resident set size so far (None where unknown).

  `ru_maxrss` is in KiB on Linux and bytes on macOS; Windows has no
  `resource` module.
  """
  try:
    import resource  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(peak if sys.platform == "darwin" else peak * 1024)


def run_families(inputs: EvalInputs, key: jax.Array, names="all", *,
                 registry: Mapping[str, Family]
                 ) -> Dict[str, FamilyOutput]:
  """Runs the families of `registry` that `names` selects (see `select`).

  Args:
    inputs: what the families see.
    key: the run's key; each family gets `family_key(key, name)`.
    names: 'all', a comma-separated string or a sequence of names.
    registry: name -> Family, e.g. `gendiag.report.families.REGISTRY`.

  Returns:
    {family: FamilyOutput}, in the order of `names` (of `registry` for
    'all').
  """
  outputs = {}
  for family in select(names, registry):
    missing = [n for n in family.needs if not inputs.has(n)]
    if missing:
      note = f"skipped: needs {', '.join(missing)}, which the inputs lack."
      logging.info("%s %s", family.name, note)
      outputs[family.name] = FamilyOutput(notes=[note])
      continue
    start = time.perf_counter()
    logging.info("metric family %s: running on %d models", family.name,
                 len(inputs.generated))
    result_cache.take_log()
    outputs[family.name] = family.fn(inputs, family_key(key, family.name))
    outputs[family.name].seconds = round(time.perf_counter() - start, 2)
    outputs[family.name].peak_rss_bytes = peak_rss_bytes()
    loaded = result_cache.take_log()["loaded"]
    if loaded:
      outputs[family.name].notes.append(
          f"loaded from the result cache ({result_cache.directory()}), "
          "computed by an earlier run with the same input rows, settings, "
          f"seed and gendiag code: {'; '.join(loaded)}.")
    logging.info("metric family %s: done in %.1f s", family.name,
                 outputs[family.name].seconds)
  return outputs


def family_config(inputs: EvalInputs, name: str, **defaults) -> dict:
  """`defaults` overridden by the `name` section of the inputs' config."""
  section = inputs.config.get(name) if hasattr(inputs.config, "get") else None
  out = dict(defaults)
  if section:
    out.update(dict(section))
  return out
