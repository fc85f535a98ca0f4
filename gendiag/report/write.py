"""Writes a run's results: metrics.json, report.md, index.html and the
families' PNG figures.

metrics.json: {"meta": {..., "family_seconds": {family: s}},
               "models": {model: {metric: entry}},
               "verdicts": {model: str},
               "families": {family: {"notes": [...], "figures": [...],
                                     "metrics": [metric names]}}}
"""

import json
import os
from typing import Dict

from gendiag.data.inputs import EvalInputs
from gendiag.report import families as families_lib
from gendiag.report import render
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
      if out.seconds is not None})
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump({"meta": jsonable(meta), "models": merged,
               "verdicts": model_verdicts, "families": families}, f,
              indent=2, allow_nan=False)
  descriptions = {name: family.description
                  for name, family in families_lib.REGISTRY.items()}
  text = render.render_markdown(inputs, outputs, figure_files, model_verdicts,
                                descriptions)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(text)
  with open(os.path.join(workdir, "index.html"), "w") as f:
    f.write(render.html_page(text))
