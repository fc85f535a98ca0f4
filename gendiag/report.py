"""The metric-family registry and the writers of metrics.json, report.md,
index.html and PNG figures.

A metric family registers one function

  @register("kid", needs=("labels",), description="...")
  def kid_family(inputs: EvalInputs, key) -> FamilyOutput: ...

which sees every model at once (so it can draw one figure comparing them)
and returns, per model, a dict {metric_name: entry} where an entry is
`{"value": float, "ci": [lo, hi] or None, ...}` (build it with `entry`).
An entry may carry a `reference`: the entry (value, ci) that held-out real
data scores at the model's sample size (`reference_sets`), shown beside the
model's value in the tables. Families that cap their inputs at `max_samples`
rows use the seeded random subsample of `subsample_rows`, the same rows of
a set in every family; their entries say how many rows they used
(`rows_used`, a table column).
A family whose `needs` are missing from the inputs is skipped with a note.
Adding a family = one module in `gendiag/evaluators/` that calls `register`.

Verdicts: a family may add plain-language findings per model
(`out.findings[model] = ["drops classes 3 and 8"]`), each derived from its
metrics with a threshold stated in the family's description or notes. A
model's verdict is its findings from every family, or "no failure detected"
when there are none.

metrics.json: {"meta": {..., "family_seconds": {family: s}},
               "models": {model: {metric: entry}},
               "verdicts": {model: str},
               "families": {family: {"notes": [...], "figures": [...],
                                     "metrics": [metric names]}}}
"""

import dataclasses
import json
import math
import os
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import logging
import jax
import markdown
from matplotlib.figure import Figure
import numpy as np

NEEDS = ("real_labels", "generated_labels", "train", "test", "images")


@dataclasses.dataclass
class EvalInputs:
  """Everything a metric family may use. Arrays are (n, d) float32 features.

  Attributes:
    real: real (reference) features.
    generated: model name -> generated features.
    real_labels: (n,) class labels of `real`, if known.
    generated_labels: model name -> labels (a model may lack them).
    train: the generator's training features (memorisation metrics).
    test: held-out real features never seen by the generator (FLD).
    images: optional name -> image arrays ('real', 'train' or a model name)
      for families that need pixels (CAS, image grids).
    failures: model name -> the known failure of a simulated model.
    config: family hyperparameters (an ml_collections ConfigDict or dict).
  """
  real: np.ndarray
  generated: Dict[str, np.ndarray]
  real_labels: Optional[np.ndarray] = None
  generated_labels: Dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  train: Optional[np.ndarray] = None
  test: Optional[np.ndarray] = None
  images: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  failures: Dict[str, str] = dataclasses.field(default_factory=dict)
  config: Any = dataclasses.field(default_factory=dict)

  def has(self, need: str) -> bool:
    if need == "generated_labels":
      return bool(self.generated_labels)
    if need == "images":
      return bool(self.images)
    return getattr(self, need) is not None


@dataclasses.dataclass
class FamilyOutput:
  """What a family returns: per-model metric entries, figures, notes.

  Attributes:
    metrics: model -> {metric: entry}.
    figures: file name (e.g. 'kid.png') -> matplotlib Figure.
    notes: sentences shown under the family's table.
    sections: markdown blocks shown after the table (e.g. ranked lists).
    findings: model -> short plain-language findings for its verdict.
  """
  metrics: Dict[str, Dict[str, dict]] = dataclasses.field(default_factory=dict)
  figures: Dict[str, Figure] = dataclasses.field(default_factory=dict)
  notes: List[str] = dataclasses.field(default_factory=list)
  sections: List[str] = dataclasses.field(default_factory=list)
  findings: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
  seconds: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  fn: Callable[[EvalInputs, jax.Array], FamilyOutput]
  needs: Sequence[str]
  description: str


REGISTRY: Dict[str, Family] = {}


def register(name: str, *, needs: Sequence[str] = (), description: str = ""):
  """Decorator adding a family function to the registry under `name`."""
  unknown = set(needs) - set(NEEDS)
  if unknown:
    raise ValueError(f"unknown needs {sorted(unknown)}; choose from {NEEDS}.")

  def wrap(fn):
    if name in REGISTRY:
      raise ValueError(f"metric family {name!r} is registered twice.")
    REGISTRY[name] = Family(name, fn, tuple(needs), description)
    return fn

  return wrap


def entry(value, ci=None, *, reference: Optional[dict] = None,
          **extra) -> dict:
  """A JSON-ready metric entry {"value": float, "ci": [lo, hi] or None}.

  `reference`, when given, is the entry (built by `entry`) of held-out real
  data scored like the model at its sample size; it is stored under
  "reference" and shown beside the value.
  """
  out = {"value": _number(value),
         "ci": None if ci is None else [_number(c) for c in ci]}
  out.update({k: _jsonable(v) for k, v in extra.items()})
  if reference is not None:
    out["reference"] = reference
  return out


def _number(x):
  x = float(np.asarray(x))
  return x if math.isfinite(x) else None


def _jsonable(x):
  if isinstance(x, (np.ndarray, jax.Array, np.generic)):
    a = np.asarray(x)
    return a.item() if a.ndim == 0 else a.tolist()
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  return x


def run_seed(inputs: "EvalInputs") -> int:
  """The run's seed (`config.seed`, 0 when the config has none)."""
  cfg = inputs.config
  seed = cfg.get("seed", 0) if hasattr(cfg, "get") else 0
  return int(seed or 0)


def subsample_index(inputs: "EvalInputs", set_name: str, num_rows: int,
                    cap: int) -> Optional[np.ndarray]:
  """Sorted rows of a seeded random subsample of `cap` of `num_rows` rows.

  The permutation depends only on the run's seed, the set's name and its
  size, never on a family's key: every family that caps a set uses the same
  rows, and a smaller cap takes a subset of a larger one's rows (the first
  `cap` entries of one permutation). None when no row is left out.
  """
  if num_rows <= cap:
    return None
  rng = np.random.default_rng(
      [run_seed(inputs), zlib.crc32(set_name.encode()), num_rows])
  return np.sort(rng.permutation(num_rows)[:cap])


def subsample_rows(inputs: "EvalInputs", set_name: str, cap: int, *arrays):
  """`arrays` (rows of set `set_name`) restricted to its capped subsample.

  Args:
    inputs: the run's inputs (for the seed).
    set_name: 'real', a model name, or another stable name of the set.
    cap: rows kept at most.
    *arrays: arrays whose rows are the set's rows (features, then labels:
      labels follow their rows); None entries stay None.

  Returns:
    A tuple of the arrays, each restricted to the same seeded random rows
    (unchanged when the set has at most `cap` rows).
  """
  idx = subsample_index(inputs, set_name, len(arrays[0]), int(cap))
  if idx is None:
    return tuple(arrays)
  return tuple(None if a is None else np.asarray(a)[idx] for a in arrays)


def subsample_note(inputs: "EvalInputs", cap: int, families: str) -> str:
  """The note of a family that caps its sets at `cap` rows ('' if none)."""
  sizes = [inputs.real.shape[0]] + [g.shape[0]
                                    for g in inputs.generated.values()]
  if max(sizes) <= cap:
    return ""
  return (f"sets larger than {cap} rows enter as a seeded random subsample "
          f"of {cap} rows (seed {run_seed(inputs)}, drawn per set, the same "
          f"rows in {families}); `rows used` lists each model's "
          "(real, model) rows.")


@dataclasses.dataclass
class ReferenceSets:
  """Real data scored like a model of `size` samples (`reference_sets`).

  Attributes:
    real: the real side (the real set itself, or the rest of a split).
    real_labels: its labels (None without real labels).
    heldout: `size` rows of real data disjoint from `real`, in place of the
      model's samples.
    heldout_labels: their labels when known (a split of the real set), else
      None.
    source: how the held-out rows were obtained (for the family's notes).
    same_real: True when `real` is the real set itself (the model's
      programs, of the same shapes, are reused).
  """
  real: np.ndarray
  real_labels: Optional[np.ndarray]
  heldout: np.ndarray
  heldout_labels: Optional[np.ndarray]
  source: str
  same_real: bool


def reference_sets(inputs: "EvalInputs", size: int) -> ReferenceSets:
  """Held-out real data of `size` rows against the real set: the reference.

  The held-out rows are a seeded random subsample (run seed, the size) of
  `inputs.test`, topped up with `inputs.train` when the test set has fewer
  than `size` rows (both are real data the real set does not contain; rows
  identical to a real row are left out). Then the real side is the real set
  itself, so the reference has the model's sizes. Without enough such rows
  the real set is split (seeded): min(size, n // 2) rows held out, the
  rest as the real side (smaller than the model's; the source says so).
  """
  real = np.asarray(inputs.real)
  rng = np.random.default_rng([run_seed(inputs), zlib.crc32(b"reference"),
                               int(size)])
  pool, names = [], []
  for name in ("test", "train"):
    rows = getattr(inputs, name)
    if rows is not None and sum(len(p) for p in pool) < size:
      pool.append(np.asarray(rows, real.dtype))
      names.append(name)
  if pool:
    pool = np.concatenate(pool)
    seen = {r.tobytes() for r in real}
    pool = pool[np.array([r.tobytes() not in seen for r in pool], bool)]
  if len(pool) >= size:
    rows = np.sort(rng.permutation(len(pool))[:size])
    return ReferenceSets(
        real, inputs.real_labels, pool[rows], None,
        f"{size} held-out real rows (seeded random subsample of the "
        f"{' and '.join(names)} set{'s' if len(names) > 1 else ''}) "
        f"against the {len(real)} real rows", True)
  perm = rng.permutation(len(real))
  held = min(int(size), len(real) // 2)
  rest, out = np.sort(perm[held:]), np.sort(perm[:held])
  labels = inputs.real_labels
  return ReferenceSets(
      real[rest], None if labels is None else np.asarray(labels)[rest],
      real[out], None if labels is None else np.asarray(labels)[out],
      f"a seeded random split of the real set: {held} rows held out against "
      f"the other {len(rest)} (no held-out set of {size} rows was given)",
      False)


def family_key(key: jax.Array, name: str) -> jax.Array:
  """A key for one family, stable across runs and independent of order."""
  return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def select(names) -> List[Family]:
  """Families named by 'all', a comma-separated string or a sequence."""
  if isinstance(names, str):
    names = list(REGISTRY) if names == "all" else [
        s.strip() for s in names.split(",") if s.strip()]
  unknown = [n for n in names if n not in REGISTRY]
  if unknown:
    raise ValueError(f"unknown metric families {unknown}; registered: "
                     f"{sorted(REGISTRY)}.")
  return [REGISTRY[n] for n in names]


def run_families(inputs: EvalInputs, key: jax.Array, names="all"):
  """Runs the selected families; returns {family: FamilyOutput}."""
  outputs = {}
  for family in select(names):
    missing = [n for n in family.needs if not inputs.has(n)]
    if missing:
      note = f"skipped: needs {', '.join(missing)}, which the inputs lack."
      logging.info("%s %s", family.name, note)
      outputs[family.name] = FamilyOutput(notes=[note])
      continue
    start = time.perf_counter()
    logging.info("metric family %s: running on %d models", family.name,
                 len(inputs.generated))
    outputs[family.name] = family.fn(inputs, family_key(key, family.name))
    outputs[family.name].seconds = round(time.perf_counter() - start, 2)
    logging.info("metric family %s: done in %.1f s", family.name,
                 outputs[family.name].seconds)
  return outputs


def _format(value: Optional[float]) -> str:
  if value is None:
    return "n/a"
  if value == 0 or 1e-3 <= abs(value) < 1e5:
    return f"{value:.4g}"
  return f"{value:.3e}"


def _cell(e: Optional[dict]) -> str:
  if e is None:
    return ""
  text = _format(e.get("value"))
  if e.get("ci"):
    lo, hi = e["ci"]
    text += f" [{_format(lo)}, {_format(hi)}]"
  return text


REFERENCE_ROW = "real vs real (reference)"


def _rows_used(entries: Dict[str, dict]) -> str:
  for e in entries.values():
    if e.get("rows_used"):
      return " / ".join(str(r) for r in e["rows_used"])
  return ""


def markdown_table(models: Sequence[str],
                   metrics: Dict[str, Dict[str, dict]]) -> str:
  """A models x metrics markdown table; intervals in brackets.

  Entries with a `reference` add a last row, "real vs real (reference)",
  holding it; a column whose models have different references (different
  sample sizes) shows each beside the model's value instead. Entries with
  `rows_used` add a column "rows used (real / model)".
  """
  columns = []
  for model in models:
    for name in metrics.get(model, {}):
      if name not in columns:
        columns.append(name)
  if not columns:
    return ""
  shared, inline = {}, set()
  for c in columns:
    refs = [metrics.get(m, {}).get(c, {}).get("reference") for m in models]
    refs = [r for r in refs if r is not None]
    if refs and all(r == refs[0] for r in refs):
      shared[c] = refs[0]
    elif refs:
      inline.add(c)
  rows_used = [_rows_used(metrics.get(m, {})) for m in models]
  extra = ["rows used (real / model)"] if any(rows_used) else []
  head = ["model"] + columns + extra
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for model, used in zip(models, rows_used):
    cells = []
    for c in columns:
      e = metrics.get(model, {}).get(c)
      text = _cell(e)
      if c in inline and e and e.get("reference"):
        text += f" (real vs real: {_cell(e['reference'])})"
      cells.append(text)
    lines.append("| " + " | ".join([model] + cells + (
        [used] if extra else [])) + " |")
  if shared or inline:
    cells = [_cell(shared[c]) if c in shared else (
        "beside each value" if c in inline else "") for c in columns]
    lines.append("| " + " | ".join([REFERENCE_ROW] + cells + (
        [""] if extra else [])) + " |")
  return "\n".join(lines)


def verdicts(models: Sequence[str], outputs: Dict[str, FamilyOutput]
             ) -> Dict[str, str]:
  """One sentence per model joining every family's findings."""
  out = {}
  for model in models:
    found = [f"{text} ({name})" for name, fam in outputs.items()
             for text in fam.findings.get(model, [])]
    out[model] = ("; ".join(found) + ".") if found else (
        "no failure detected by the metrics that ran.")
  return out


def render_markdown(inputs: EvalInputs, outputs: Dict[str, FamilyOutput],
                    figure_files: Dict[str, List[str]],
                    model_verdicts: Dict[str, str]) -> str:
  """The report as markdown: verdicts first, then one section per family."""
  models = list(inputs.generated)
  lines = ["# gendiag report", "",
           f"Real set: {inputs.real.shape[0]} samples x "
           f"{inputs.real.shape[1]} features. Models: {', '.join(models)}.",
           "", "## Verdicts", ""]
  simulated = any(inputs.failures.get(m) for m in models)
  head = ["model"] + (["simulated failure"] if simulated else []) + ["verdict"]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for model in models:
    row = [model] + ([inputs.failures.get(model, "")] if simulated else [])
    lines.append("| " + " | ".join(row + [model_verdicts[model]]) + " |")
  lines.append("")
  for name, out in outputs.items():
    family = REGISTRY.get(name)
    lines += [f"## {name}", ""]
    if family is not None and family.description:
      lines += [family.description, ""]
    table = markdown_table(models, out.metrics)
    if table:
      lines += [table, ""]
    lines += [f"- {note}" for note in out.notes]
    if out.notes:
      lines.append("")
    for section in out.sections:
      lines += [section, ""]
    for filename in figure_files.get(name, []):
      lines += [f"![{name}]({filename})", ""]
  return "\n".join(lines)


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>gendiag report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
th {{ background: #f2f2f2; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }}
</style></head><body>
{body}
</body></html>
"""


def write_report(workdir: str, inputs: EvalInputs,
                 outputs: Dict[str, FamilyOutput], meta: dict):
  """Writes metrics.json, report.md, index.html and the families' PNGs."""
  os.makedirs(workdir, exist_ok=True)
  models = list(inputs.generated)
  merged = {m: {} for m in models}
  families, figure_files = {}, {}
  for name, out in outputs.items():
    for model, values in out.metrics.items():
      merged.setdefault(model, {}).update(values)
    figure_files[name] = []
    for filename, fig in out.figures.items():
      fig.savefig(os.path.join(workdir, filename), dpi=110,
                  bbox_inches="tight")
      figure_files[name].append(filename)
    families[name] = {
        "notes": out.notes, "figures": figure_files[name],
        "metrics": sorted({k for v in out.metrics.values() for k in v})}
  model_verdicts = verdicts(models, outputs)
  meta = dict(meta, family_seconds={
      name: out.seconds for name, out in outputs.items()
      if out.seconds is not None})
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump({"meta": _jsonable(meta), "models": merged,
               "verdicts": model_verdicts, "families": families}, f,
              indent=2, allow_nan=False)
  text = render_markdown(inputs, outputs, figure_files, model_verdicts)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(text)
  body = markdown.markdown(text, extensions=["tables"])
  with open(os.path.join(workdir, "index.html"), "w") as f:
    f.write(_HTML.format(body=body))


def bar_chart(title: str, models: Sequence[str], values: Sequence[float],
              errors: Optional[Sequence[float]] = None, *,
              ylabel: str = "") -> Figure:
  """One bar per model, with optional symmetric error bars."""
  fig = Figure(figsize=(1.0 + 0.9 * len(models), 3.2))
  ax = fig.subplots()
  ax.bar(range(len(models)), values, yerr=errors, capsize=3,
         color="#4c72b0")
  ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
  ax.set_title(title)
  ax.set_ylabel(ylabel)
  ax.axhline(0.0, color="black", linewidth=0.6)
  return fig


def family_config(inputs: EvalInputs, name: str, **defaults) -> dict:
  """`defaults` overridden by the `name` section of the inputs' config."""
  section = inputs.config.get(name) if hasattr(inputs.config, "get") else None
  out = dict(defaults)
  if section:
    out.update(dict(section))
  return out
