"""Verdicts: one plain-language sentence per model.

A family may add findings per model (`out.findings[model] = ["drops classes
3 and 8"]`), each derived from its metrics with a threshold stated in the
family's description or notes. A model's verdict is its findings from every
family, or "no failure detected" when there are none.
"""

from typing import Dict, Sequence

from gendiag.report.registry import FamilyOutput


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
