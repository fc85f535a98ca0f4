"""The report's text and figures: markdown tables, the markdown report, the
HTML page and bar charts.

Numbers are shown with 4 significant digits (scientific below 1e-3 and from
1e5), intervals in brackets after the value.
"""

from typing import Dict, List, Mapping, Optional, Sequence

import markdown
from matplotlib.figure import Figure

from gendiag.data.inputs import EvalInputs
from gendiag.report.registry import FamilyOutput


def format_number(value: Optional[float]) -> str:
  """A report cell's number: fixed point in [1e-3, 1e5), else scientific."""
  if value is None:
    return "n/a"
  if value == 0 or 1e-3 <= abs(value) < 1e5:
    return f"{value:.4g}"
  return f"{value:.3e}"


def _cell(e: Optional[dict]) -> str:
  if e is None:
    return ""
  text = format_number(e.get("value"))
  if e.get("ci"):
    lo, hi = e["ci"]
    text += f" [{format_number(lo)}, {format_number(hi)}]"
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


def render_markdown(inputs: EvalInputs, outputs: Dict[str, FamilyOutput],
                    figure_files: Dict[str, List[str]],
                    model_verdicts: Dict[str, str],
                    descriptions: Mapping[str, str]) -> str:
  """The report as markdown: verdicts first, then one section per family.

  `descriptions` maps a family name to the text shown under its heading
  (families without one show none).
  """
  models = list(inputs.generated)
  lines = ["# gendiag report", "",
           f"Real set: {inputs.real.shape[0]} samples x "
           f"{inputs.real.shape[1]} features. Models: {', '.join(models)}.",
           "", f"Feature space: {inputs.feature_space}.",
           "", "## Verdicts", ""]
  simulated = any(inputs.failures.get(m) for m in models)
  head = ["model"] + (["simulated failure"] if simulated else []) + ["verdict"]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for model in models:
    row = [model] + ([inputs.failures.get(model, "")] if simulated else [])
    lines.append("| " + " | ".join(row + [model_verdicts[model]]) + " |")
  lines.append("")
  for name, out in outputs.items():
    lines += [f"## {name}", ""]
    if descriptions.get(name):
      lines += [descriptions[name], ""]
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


def html_page(text: str) -> str:
  """The standalone HTML page (index.html) of the markdown report `text`."""
  return _HTML.format(body=markdown.markdown(text, extensions=["tables"]))


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
