"""The fld family's shared pieces give the results of the searches they replace.

C_T with a projection fitted once against the path that refits it, on small
sets with exact copies (and duplicated training rows, so ties and zero
distances occur).
"""

import jax
import numpy as np
import pytest

from gendiag.metrics import data_copying

KEY = jax.random.key(0)


def _sets(seed, n_train=300, n_test=150, n_gen=120, d=8):
  """Blobs with exact copies in gen and a duplicated training row."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(99).normal(size=(3, d)) * 4
  draw = lambda n: np.float32(centres[rng.integers(0, 3, n)]
                              + rng.normal(size=(n, d)))
  train, test, gen = draw(n_train), draw(n_test), draw(n_gen)
  train[1] = train[0]                       # a tie at distance 0
  gen[:30] = train[:30]                     # exact copies (one of a pair)
  gen[30:40] = train[40:50] + np.float32(1e-3)   # near copies
  return train, test, gen


def _assert_same(a, b):
  for name, value in a.to_dict().items():
    np.testing.assert_array_equal(value, b.to_dict()[name], err_msg=name)


# --------------------------------------------------------------------------
# C_T: one PCA of the training set.


def test_c_t_with_a_shared_projection_is_the_refit():
  train, test, gen = _sets(1)
  proj = data_copying.train_projection(train, max_dim=6)
  assert proj.components.shape == (8, 6)
  for seed in (0, 1):
    key = jax.random.key(seed)
    own = data_copying.data_copying_test(train, test, gen, key=key, max_dim=6)
    shared = data_copying.data_copying_test(train, test, gen, key=key,
                                            max_dim=6, projection=proj)
    _assert_same(shared, own)
  assert float(own.c_t) < -2.0               # the copies are seen
  # No projection at or below max_dim: None, and the test does not project.
  assert data_copying.train_projection(train, max_dim=8) is None
  assert data_copying.train_projection(train, max_dim=None) is None
  with pytest.raises(ValueError, match="projection"):
    data_copying.data_copying_test(
        train[:, :7], test[:, :7], gen[:, :7], key=KEY, projection=proj)


def test_c_t_shared_projection_of_rescaled_sets():
  train, test, gen = (a * np.float32(1e20) for a in _sets(2))
  proj = data_copying.train_projection(train, max_dim=6)
  own = data_copying.data_copying_test(train, test, gen, key=KEY, max_dim=6)
  shared = data_copying.data_copying_test(train, test, gen, key=KEY,
                                          projection=proj)
  np.testing.assert_array_equal(shared.train_cells, own.train_cells)
  np.testing.assert_allclose(float(shared.c_t), float(own.c_t), atol=1e-5)
  np.testing.assert_allclose(shared.generated_distance, own.generated_distance,
                             rtol=1e-4)
