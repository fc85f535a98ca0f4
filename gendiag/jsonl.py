"""JSON-lines logs: the one writer (and reader) of `metrics.jsonl` files.

Every binary that logs as it goes (the flow trainer, the experiments' one line
per model or dataset) writes through `JsonLinesWriter`, so a file is always
whole lines of `json.dumps` output, flushed after each record.
"""

import json
import os
from typing import Iterator, Optional


class JsonLinesWriter:
  """Appends one JSON object per line to `path`, flushing after each.

  Usable as a context manager. `write_scalars(step, scalars)` is CLU's
  metric-writer name (no TensorFlow) for `write({"step": step, **scalars})`.
  """

  def __init__(self, path: str, *, mode: str = "a",
               truncate_after: Optional[int] = None):
    """Opens `path`.

    Args:
      path: the file.
      mode: "a" appends to an existing file, "w" starts a new one.
      truncate_after: when given, first drops the lines whose "step" is
        larger (a resumed run rewrites the steps after its checkpoint).
    """
    if mode not in ("a", "w"):
      raise ValueError(f"mode must be 'a' or 'w'; got {mode!r}.")
    if truncate_after is not None and os.path.exists(path):
      kept = [r for r in read_lines(path) if r["step"] <= truncate_after]
      with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    self._file = open(path, mode)

  def write(self, record: dict) -> None:
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()

  def write_scalars(self, step: int, scalars: dict) -> None:
    self.write({"step": int(step), **scalars})

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> "JsonLinesWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_lines(path: str) -> Iterator[dict]:
  """The records of a JSON-lines file, skipping blank lines."""
  with open(path) as f:
    for line in f:
      if line.strip():
        yield json.loads(line)


def last_line(path: str) -> dict:
  """The last record of a JSON-lines file ({} when absent or empty)."""
  if not os.path.exists(path):
    return {}
  last = {}
  for last in read_lines(path):
    pass
  return last
