"""Shared fixtures. float64 references are computed with numpy, not JAX."""

import numpy as np
import pytest


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def np_sq_distances(x, y):
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
