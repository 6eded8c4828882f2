"""scorelab.metrics and scorelab.pictures: distances against closed forms, grid layout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from scorelab import data
from scorelab.data import toy
from scorelab.metrics import METRICS, fid, sliced_wasserstein
from scorelab.pictures import image_grid, scatter_image


def with_moments(rng, n, mean, cov):
    """n points whose empirical mean and (unbiased) covariance are exactly `mean` and `cov`."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)
    return mean + z @ np.linalg.cholesky(cov).T


def test_frechet_distance_is_the_gaussian_closed_form():
    """For commuting covariances, FD = |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2; a common
    rotation makes the covariances full and must not change it."""
    frechet_distance = lambda a, b: fid.frechet_distance(*fid.statistics(a), *fid.statistics(b))
    rng = np.random.default_rng(0)
    va, vb = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    ma, mb = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = np.sum((ma - mb) ** 2) + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2)
    a, b = with_moments(rng, 500, ma, np.diag(va)), with_moments(rng, 400, mb, np.diag(vb))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    assert frechet_distance(a @ q.T, b @ q.T) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_sliced_wasserstein_of_a_shift_in_one_dimension_is_the_shift():
    x = jax.random.normal(jax.random.key(0), (1000, 1))
    assert float(sliced_wasserstein(x, x + 0.7, jax.random.key(1))) == pytest.approx(0.7, rel=1e-5)
    assert float(sliced_wasserstein(x, x[::-1], jax.random.key(1))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same number of samples"):
        sliced_wasserstein(x, x[:10], jax.random.key(1))


def test_image_grid_places_each_image_in_reading_order():
    images = np.stack([np.full((2, 3, 1), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = image_grid(images, pad=1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)  # 3 columns, 2 rows
    for i in range(5):
        r, c = divmod(i, 3)
        block = grid[1 + 3 * r:1 + 3 * r + 2, 1 + 4 * c:1 + 4 * c + 3]
        assert np.all(block == 10 * (i + 1)), i
    assert np.all(grid[0] == 0) and np.all(grid[:, 0] == 0) and np.all(grid[4:6, 9:12] == 0)


def test_scatter_image_marks_where_points_are():
    picture = scatter_image(np.array([[-3.5, -3.5]] * 50), size=8, extent=4.0)
    assert picture.shape == (8, 8, 1)
    assert picture[-1, 0, 0] == 0 and np.all(np.delete(picture.ravel(), 56) == 255)


def _mixture_log_density(x):
    """log p(x) of the toy set's mixture, written out in numpy from the constants the data are
    drawn with (scorelab/data/toy.py's MIXTURE), independently of sde.GaussianMixture."""
    w, mu, s = (np.asarray(toy.MIXTURE[k], np.float64) for k in ("weights", "means", "stds"))
    sq = np.sum(np.square(x[..., None, :] - mu), -1)  # (..., k)
    return logsumexp(np.log(w) - np.log(2 * np.pi * s**2) - 0.5 * sq / s**2, axis=-1)  # d = 2


def test_toy_metrics_know_the_true_density():
    """The true-density NLL of held-out points is the mixture's differential entropy
    H = -E_p[log p], and the samples' mean log p(x + shift) for x ~ p is E_p[log p(x + shift)].
    Both expectations by quadrature on a grid (h = 0.05, a sixth of the smallest component std,
    where the rectangle rule on a Gaussian is exact to ~1e-13: h = 0.02 gives the same digits);
    the tolerance is 4 Monte-Carlo standard errors sqrt(Var_p[.] / n), the variance by the same
    quadrature. H = 1.75595 nats."""
    n, shift = 20000, np.array([0.25, 0.0])
    ds = data.load("mixture", num_train=10, num_test=n, seed=0)
    out = METRICS["mixture_density"](ds.test + shift, ds, jax.random.key(0))
    h = 0.05
    grid = np.stack(np.meshgrid(np.arange(-6, 7, h), np.arange(-5, 6, h), indexing="ij"), -1)
    log_p = _mixture_log_density(grid)
    p = np.exp(log_p) * h * h
    assert abs(p.sum() - 1) < 1e-9  # the grid holds all the mass
    moments = lambda f: (np.sum(p * f), np.sqrt((np.sum(p * f**2) - np.sum(p * f) ** 2) / n))
    entropy, se = moments(-log_p)
    # Cross-check of the quadrature: the components barely overlap, so H is the weights'
    # entropy plus the components' mean entropy, sum_k w_k log(2 pi e s_k^2) in 2-D.
    w, s = np.asarray(toy.MIXTURE["weights"]), np.asarray(toy.MIXTURE["stds"])
    separated = -w @ np.log(w) + w @ np.log(2 * np.pi * np.e * s**2)
    assert entropy == pytest.approx(separated, abs=1e-5)
    assert out["eval/nll_true_density_nats"] == pytest.approx(entropy, abs=4 * se), se
    cross, se_cross = moments(_mixture_log_density(grid + shift))  # about -1.95: the shift costs
    assert out["eval/sample_logp_true_density"] == pytest.approx(cross, abs=4 * se_cross), \
        se_cross  # the samples, not the held-out points (-1.76), are scored
    w2 = METRICS["sliced_w2"](ds.test[:4000] + jnp.array([1.0, 0.0]), ds, jax.random.key(0))
    assert 0.5 < w2["eval/sliced_w2"] < 1.0  # a unit shift in 2-D: about 1 / sqrt(2)
