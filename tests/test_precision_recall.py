"""k-NN precision/recall: hand cases, the prdc oracle, a float64 reference."""

import contextlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import prdc as prdc_package
import pytest

from gendiag.metrics import manifold
from gendiag.metrics import precision_recall as pr
from tests.conftest import np_sq_distances


def _col(values):
  return np.asarray(values, np.float32)[:, None]


def _oracle(real, fake, k):
  with contextlib.redirect_stdout(io.StringIO()):  # prdc prints sizes
    return prdc_package.compute_prdc(real, fake, nearest_k=k)


def _np_improved(real, fake, k):
  """Kynkaanniemi et al.'s definitions in float64 numpy, full matrices."""
  d_rr = np.sqrt(np_sq_distances(real, real))
  d_ff = np.sqrt(np_sq_distances(fake, fake))
  d_rf = np.sqrt(np_sq_distances(real, fake))
  r_real = np.sort(d_rr, axis=1)[:, k]
  r_fake = np.sort(d_ff, axis=1)[:, k]
  in_real = (d_rf <= r_real[:, None]).any(axis=0)
  in_fake = (d_rf <= r_fake[None, :]).any(axis=1)
  pruned = np.where(r_real > np.percentile(r_real, 50), 0.0, r_real)
  realism = (pruned[:, None] / (d_rf + 1e-5)).max(axis=0)
  return in_real, in_fake, realism


@pytest.fixture(scope="module")
def clouds():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(130, 16)).astype(np.float32)
  fake = (rng.normal(size=(110, 16)) * 1.2 + 0.3).astype(np.float32)
  return real, fake


@pytest.fixture(scope="module")
def multi_k(clouds):
  """prdc for k = 1, 3, 5 in one pass (one compile shared by several tests)."""
  return pr.prdc(*clouds, k=(1, 3, 5), block_size=32)


# --------------------------------------------------------------------------
# Hand-computed 1-D cases (notes/precision_recall.md).


def test_t1_outlier_inflates_recall():
  res = pr.prdc(_col([0, 1, 2, 3]), _col([0.5, 10, 20]), k=1)
  np.testing.assert_allclose(
      [res.precision, res.recall, res.density, res.coverage],
      [1 / 3, 1, 2 / 3, 0.5], atol=1e-6)
  np.testing.assert_array_equal(res.generated_in_real_manifold,
                                [True, False, False])
  np.testing.assert_array_equal(res.real_covered, [True, True, False, False])
  np.testing.assert_array_equal(res.generated_neighbor_counts, [2, 0, 0])
  np.testing.assert_allclose(res.generated_radii, [9.5, 9.5, 10])


def test_t2_tie_pins_strict_versus_inclusive():
  real, fake = _col([0, 1, 2]), _col([3, 10, 11])
  strict = pr.prdc(real, fake, k=1)
  np.testing.assert_allclose(
      [strict.precision, strict.recall, strict.density, strict.coverage],
      [0, 1, 0, 0])
  inclusive = pr.improved_precision_recall(real, fake, k=1)
  assert float(inclusive.precision) == pytest.approx(1 / 3)
  np.testing.assert_array_equal(inclusive.generated_in_real_manifold,
                                [True, False, False])


@pytest.mark.parametrize("k", [1, 2])
def test_t3_identical_sets_give_ones(k):
  x = _col([0, 1, 3, 7])
  res = pr.prdc(x, x, k=k)
  np.testing.assert_allclose(
      [res.precision, res.recall, res.density, res.coverage], [1, 1, 1, 1])
  ipr = pr.improved_precision_recall(x, x, k=k)
  np.testing.assert_allclose([ipr.precision, ipr.recall], [1, 1])


def test_t4_disjoint_sets_give_zeros(rng):
  real = rng.normal(size=(20, 3)).astype(np.float32)
  res = pr.prdc(real, real + 100.0, k=3)
  np.testing.assert_allclose(
      [res.precision, res.recall, res.density, res.coverage], [0, 0, 0, 0])
  ipr = pr.improved_precision_recall(real, real + 100.0)
  np.testing.assert_allclose([ipr.precision, ipr.recall], [0, 0])
  assert float(jnp.max(ipr.realism)) < 0.1


# --------------------------------------------------------------------------
# The prdc oracle and a float64 reference.


def test_matches_prdc_package(clouds, multi_k):
  real, fake = clouds
  for i, k in enumerate(multi_k.k):
    want = _oracle(real, fake, k)
    for name in ("precision", "recall", "density", "coverage"):
      # Float32 vs float64 near-ties may flip a count or two.
      assert float(getattr(multi_k, name)[i]) == pytest.approx(
          want[name], abs=2.0 / len(fake)), (k, name)


def test_matches_prdc_package_high_dim_and_duplicates(rng):
  real = rng.uniform(size=(100, 256)).astype(np.float32)  # n == m path
  fake = np.concatenate([real[:30], rng.uniform(size=(70, 256)) + 0.05]
                        ).astype(np.float32)
  got = pr.prdc(real, fake, k=(3, 5))
  for i, k in enumerate((3, 5)):
    want = _oracle(real, fake, k)
    for name in ("precision", "recall", "density", "coverage"):
      assert float(getattr(got, name)[i]) == pytest.approx(
          want[name], abs=2.0 / len(fake)), (k, name)


def test_several_k_in_one_pass_equal_separate_calls(clouds, multi_k):
  real, fake = clouds
  assert multi_k.k == (1, 3, 5) and multi_k.precision.shape == (3,)
  assert multi_k.real_covered.shape == (3, len(real))
  one = pr.prdc(real, fake, k=5)
  assert one.k == 5 and one.precision.shape == ()
  for name in ("precision", "recall", "density", "coverage",
               "generated_neighbor_counts", "real_covered"):
    np.testing.assert_array_equal(getattr(multi_k, name)[2],
                                  getattr(one, name), err_msg=name)
  # Two compiled programs: the radii may differ in the last bit (XLA fuses
  # the symmetric pass's norms differently), never more.
  np.testing.assert_allclose(multi_k.real_radii[2], one.real_radii,
                             rtol=3e-7, atol=0)


def test_improved_matches_float64_reference(clouds):
  real, fake = clouds
  res = pr.improved_precision_recall(real, fake, k=[2, 3], block_size=48)
  for i, k in enumerate((2, 3)):
    in_real, in_fake, realism = _np_improved(real, fake, k)
    np.testing.assert_array_equal(res.generated_in_real_manifold[i], in_real)
    np.testing.assert_array_equal(res.real_in_generated_manifold[i], in_fake)
    assert float(res.precision[i]) == pytest.approx(in_real.mean())
    assert float(res.recall[i]) == pytest.approx(in_fake.mean())
    np.testing.assert_allclose(res.realism[i], realism, rtol=1e-4)
    # Realism >= 1 only inside the (pruned) real manifold.
    assert np.all(np.asarray(res.generated_in_real_manifold[i])[
        np.asarray(res.realism[i]) >= 1.0])


def test_per_sample_outputs_are_consistent(clouds, multi_k):
  real, fake = clouds
  res = jax.tree.map(lambda a: a[1], multi_k)  # k = 3
  assert float(res.precision) == pytest.approx(
      np.mean(res.generated_in_real_manifold))
  assert float(res.density) == pytest.approx(
      float(np.sum(res.generated_neighbor_counts)) / (3 * len(fake)), rel=1e-6)
  np.testing.assert_array_equal(res.generated_in_real_manifold,
                                np.asarray(res.generated_neighbor_counts) > 0)
  d = np.sqrt(np_sq_distances(real, fake))
  np.testing.assert_array_equal(res.real_covered,
                                d.min(axis=1) < np.asarray(res.real_radii))


def test_block_sizes_do_not_change_results(clouds, multi_k):
  real, fake = clouds
  a = pr.prdc(real, fake, k=(1, 3, 5), block_size=4096)
  for name in ("precision", "recall", "density", "coverage",
               "real_covered", "generated_neighbor_counts"):
    np.testing.assert_array_equal(getattr(a, name), getattr(multi_k, name))


def test_jit_and_vmap(clouds, multi_k):
  real, fake = clouds
  jitted = jax.jit(lambda a, b: pr.prdc(a, b, k=(1, 3, 5), block_size=32))(
      real, fake)
  np.testing.assert_array_equal(jitted.density, multi_k.density)
  fakes = jnp.stack([fake, fake[::-1] + 0.5])
  batched = jax.vmap(lambda b: pr.prdc(real, b, k=(1, 3, 5), block_size=32)
                     )(fakes)
  assert batched.precision.shape == (2, 3)
  np.testing.assert_array_equal(batched.coverage[0], multi_k.coverage)
  shifted = pr.prdc(real, fakes[1], k=(1, 3, 5), block_size=32)
  np.testing.assert_array_equal(batched.density[1], shifted.density)


def test_result_to_dict(clouds, multi_k):
  d = multi_k.to_dict()
  assert d["k"] == [1, 3, 5] and isinstance(d["density"][0], float)
  assert len(d["real_covered"][0]) == len(clouds[0])


# --------------------------------------------------------------------------
# Bad inputs.


@pytest.mark.parametrize("fn", [pr.prdc, pr.improved_precision_recall])
def test_bad_inputs_raise(fn, rng):
  x = rng.normal(size=(10, 4)).astype(np.float32)
  with pytest.raises(ValueError, match="at least 7"):
    fn(x, x[:6], k=5)
  with pytest.raises(ValueError, match="at least 12"):
    fn(x, x, k=10)
  for bad_k in (0, -1, 2.5, ()):
    with pytest.raises(ValueError, match="`k`"):
      fn(x, x, k=bad_k)
  with pytest.raises(ValueError, match="same feature extractor"):
    fn(x, x[:, :3], k=3)
  y = x.copy()
  y[2, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    fn(x, y, k=3)
  with pytest.raises(ValueError, match="2-D"):
    fn(x[:, 0], x, k=3)


# --------------------------------------------------------------------------
# One fused pass, and real radii computed once (`manifold_radii`).


def _assert_same(got, want, *, radii_rtol=1e-6):
  """Counts and flags exact, real-valued fields to 1e-6."""
  assert got.k == want.k
  for name in want.__dataclass_fields__:
    if name == "k":
      continue
    a, b = np.asarray(getattr(got, name)), np.asarray(getattr(want, name))
    assert a.shape == b.shape, name
    if a.dtype.kind in "biu":
      np.testing.assert_array_equal(a, b, err_msg=name)
    else:
      np.testing.assert_allclose(a, b, rtol=radii_rtol, atol=0, err_msg=name)


@pytest.fixture(scope="module")
def fused_sets():
  """Sizes that are not multiples of the block size; N != M and N == M."""
  rng = np.random.default_rng(5)
  real = rng.normal(size=(75, 12)).astype(np.float32)
  fake = (rng.normal(size=(61, 12)) * 1.1 + 0.2).astype(np.float32)
  same_size = (rng.normal(size=(75, 12)) * 0.9).astype(np.float32)
  return real, fake, same_size


@pytest.mark.parametrize("ipr_k, prdc_k", [(3, 5), ((2, 3), (3, 5, 1))])
def test_fused_equals_separate_calls(fused_sets, ipr_k, prdc_k):
  real, fake, same_size = fused_sets
  radii = manifold.manifold_radii(real, k=(1, 2, 3, 5), block_size=16)
  for generated in (fake, same_size):
    want_ipr = pr.improved_precision_recall(real, generated, k=ipr_k,
                                            block_size=16)
    want_dc = pr.prdc(real, generated, k=prdc_k, block_size=16)
    for real_radii in (None, radii):
      ipr, dc = pr.improved_pr_and_prdc(real, generated, ipr_k=ipr_k,
                                        prdc_k=prdc_k, real_radii=real_radii,
                                        block_size=16)
      _assert_same(ipr, want_ipr)
      _assert_same(dc, want_dc)
    # The separate calls take the shared radii too.
    _assert_same(pr.improved_precision_recall(
        real, generated, k=ipr_k, real_radii=radii, block_size=16), want_ipr)
    _assert_same(pr.prdc(real, generated, k=prdc_k, real_radii=radii,
                         block_size=16), want_dc)


def test_fused_matches_the_oracles(fused_sets):
  real, fake, _ = fused_sets
  ipr, dc = pr.improved_pr_and_prdc(real, fake, block_size=16)
  in_real, in_fake, realism = _np_improved(real, fake, 3)
  np.testing.assert_array_equal(ipr.generated_in_real_manifold, in_real)
  np.testing.assert_array_equal(ipr.real_in_generated_manifold, in_fake)
  np.testing.assert_allclose(ipr.realism, realism, rtol=1e-4)
  want = _oracle(real, fake, 5)
  for name in ("precision", "recall", "density", "coverage"):
    assert float(getattr(dc, name)) == pytest.approx(want[name], abs=1e-6)


def test_manifold_radii_equal_the_computed_ones(fused_sets):
  real, fake, _ = fused_sets
  radii = manifold.manifold_radii(real, k=(5, 3), block_size=16)
  assert radii.k == (5, 3) and radii.radii.shape == (len(real), 2)
  d = np.sqrt(np_sq_distances(real, real))
  np.fill_diagonal(d, np.inf)
  np.testing.assert_allclose(radii.radii, np.sort(d, axis=1)[:, [4, 2]],
                             rtol=1e-5)
  ipr = pr.improved_precision_recall(real, fake, k=3, block_size=16)
  np.testing.assert_allclose(radii.radii[:, 1], ipr.real_radii, rtol=1e-6)
  # Scale handling: radii of a rescaled set come back in its units.
  big = manifold.manifold_radii(real * np.float32(2.0 ** 40), k=3, block_size=16)
  np.testing.assert_allclose(big.radii[:, 0] / 2.0 ** 40, radii.radii[:, 1],
                             rtol=1e-6)
  got = pr.prdc(real * np.float32(2.0 ** 40), fake * np.float32(2.0 ** 40),
                k=3, real_radii=big, block_size=16)
  want = pr.prdc(real, fake, k=3, block_size=16)
  np.testing.assert_array_equal(got.real_covered, want.real_covered)
  np.testing.assert_array_equal(got.generated_neighbor_counts,
                                want.generated_neighbor_counts)


def test_bad_real_radii_raise(fused_sets):
  real, fake, same_size = fused_sets
  radii = manifold.manifold_radii(real, k=(3, 5), block_size=16)
  with pytest.raises(ValueError, match=r"k=\[2\] is needed"):
    pr.improved_precision_recall(real, fake, k=2, real_radii=radii)
  with pytest.raises(ValueError, match=r"k=\[1\] is needed"):
    pr.improved_pr_and_prdc(real, fake, prdc_k=(1, 5), real_radii=radii)
  with pytest.raises(ValueError, match="ManifoldRadii"):
    pr.prdc(real, fake, real_radii=np.asarray(radii.radii))
  with pytest.raises(ValueError, match="75 rows"):  # radii of another set
    pr.prdc(real, fake, real_radii=manifold.manifold_radii(fake, k=5))
  wrong_shape = manifold.ManifoldRadii(radii.radii[:, :1], k=(3, 5))
  with pytest.raises(ValueError, match="shape"):
    pr.prdc(real, fake, real_radii=wrong_shape)
  with pytest.raises(ValueError, match="not the k-NN radii of `real`"):
    pr.prdc(real, fake, real_radii=manifold.manifold_radii(same_size, k=5))
  with pytest.raises(ValueError, match="not the k-NN radii of `real`"):
    pr.prdc(real, fake, real_radii=manifold.ManifoldRadii(radii.radii * 2, k=(3, 5)))


def test_manifold_radii_bad_inputs_raise(rng):
  x = rng.normal(size=(10, 4)).astype(np.float32)
  with pytest.raises(ValueError, match="at least 11"):
    manifold.manifold_radii(x, k=9)
  for bad_k in (0, 2.5, ()):
    with pytest.raises(ValueError, match="`k`"):
      manifold.manifold_radii(x, k=bad_k)
  with pytest.raises(ValueError, match="2-D"):
    manifold.manifold_radii(x[:, 0], k=3)
  y = x.copy()
  y[3, 0] = np.inf
  with pytest.raises(ValueError, match="NaN or inf"):
    manifold.manifold_radii(y, k=3)


def test_density_is_the_exact_count_sum():
  """Density from integer sums: exactly sum(counts) / (k M) rounded once,
  whatever the reduction order (counts above 2^8 exercise the split)."""
  rng = np.random.default_rng(3)
  counts = rng.integers(0, 5000, size=(2, 3001)).astype(np.int32)
  got = np.asarray(pr._density(jnp.asarray(counts), (3, 5)))  # pylint: disable=protected-access
  want = counts.sum(axis=1) / (np.array([3, 5]) * counts.shape[1])
  np.testing.assert_allclose(got, want, rtol=2e-7)
