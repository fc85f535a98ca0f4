"""The rows a family uses: the run's seed, capped subsamples and the
real-vs-real reference sets.

Families that cap their inputs at `max_samples` rows use the seeded random
subsample of `subsample_rows`, the same rows of a set in every family; their
entries say how many rows they used (`rows_used`, a table column). An entry
may carry a `reference`: the entry (value, ci) that held-out real data scores
at the model's sample size (`reference_sets`).
"""

import dataclasses
import zlib
from typing import Optional

import numpy as np

from gendiag.data.inputs import EvalInputs


def run_seed(inputs: EvalInputs) -> int:
  """The run's seed (`config.seed`, 0 when the config has none)."""
  cfg = inputs.config
  seed = cfg.get("seed", 0) if hasattr(cfg, "get") else 0
  return int(seed or 0)


def subsample_index(inputs: EvalInputs, set_name: str, num_rows: int,
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


def subsample_rows(inputs: EvalInputs, set_name: str, cap: int, *arrays):
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


def subsample_note(inputs: EvalInputs, cap: int, families: str) -> str:
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


def reference_sets(inputs: EvalInputs, size: int) -> ReferenceSets:
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


def capped_reference(inputs, size, cap, real_capped):
  """(reference sets, their real side capped, their held-out side capped).

  The real side is `real_capped` (the real set's own capped rows) when the
  reference uses the real set itself, else its own seeded subsample.
  """
  sets = reference_sets(inputs, size)
  ref_real, = (real_capped,) if sets.same_real else subsample_rows(
      inputs, "reference real", cap, sets.real)
  held, = subsample_rows(inputs, "reference", cap, sets.heldout)
  return sets, ref_real, held
