"""Writes a run's results: metrics.json, report.md, index.html and the
families' PNG figures.

metrics.json: {"meta": {..., "family_seconds": {family: s},
                        "family_peak_rss_gib": {family: peak so far},
                        "samples": {"file": ..., "format": "json" | "npz"}},
               "models": {model: {metric: entry}},
               "verdicts": {model: str},
               "families": {family: {"notes": [...], "figures": [...],
                                     "metrics": [metric names]}}}

samples.json (`per_sample.samples_dict`): every family's per-sample
columns per model and side, with the combined suspicion rank; above
`per_sample.JSON_MAX_ROWS` rows in all, samples.npz holds the arrays and
samples.json is the index naming them (`per_sample.samples_arrays`). The
report's "Samples behind the scores" section shows the grids and maps of
`sample_grids`.
"""

import json
import os
from typing import Dict

import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.report import families as families_lib
from gendiag.report import per_sample
from gendiag.report import render
from gendiag.report import sample_grids
from gendiag.report.registry import FamilyOutput
from gendiag.report.registry import jsonable
from gendiag.report.verdicts import verdicts


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
      if out.seconds is not None}, family_peak_rss_gib={
      name: round(out.peak_rss_bytes / 2**30, 2)
      for name, out in outputs.items() if out.peak_rss_bytes is not None})
  tables = per_sample.sample_tables(inputs, outputs)
  if tables:
    meta["samples"] = write_samples(workdir, tables)
  sample_figs, samples_text = sample_grids.sample_figures(inputs, tables)
  for filename, fig in sample_figs.items():
    fig.savefig(os.path.join(workdir, filename), dpi=100,
                bbox_inches="tight")
  if tables:
    meta["samples"]["figures"] = list(sample_figs)
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump({"meta": jsonable(meta), "models": merged,
               "verdicts": model_verdicts, "families": families}, f,
              indent=2, allow_nan=False)
  descriptions = {name: family.description
                  for name, family in families_lib.REGISTRY.items()}
  text = render.render_markdown(inputs, outputs, figure_files, model_verdicts,
                                descriptions)
  if samples_text:
    text += "\n" + samples_text
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(text)
  with open(os.path.join(workdir, "index.html"), "w") as f:
    f.write(render.html_page(text))


def write_samples(workdir: str, tables) -> dict:
  """Writes samples.json (and samples.npz above JSON_MAX_ROWS rows).

  Returns metrics.json's meta entry naming the files.
  """
  if per_sample.total_rows(tables) <= per_sample.JSON_MAX_ROWS:
    content, arrays = per_sample.samples_dict(tables), None
  else:
    content, arrays = per_sample.samples_arrays(tables)
    np.savez_compressed(os.path.join(workdir, "samples.npz"), **arrays)
  with open(os.path.join(workdir, "samples.json"), "w") as f:
    json.dump(content, f, allow_nan=False)
  if arrays is None:
    return {"file": "samples.json", "format": "json"}
  return {"file": "samples.json", "format": "npz", "arrays": "samples.npz"}
