"""Power-function EMA profiles (scorelab.posthoc_ema) against closed forms: the discrete EMA is
the profile's exact average of a piecewise-constant trajectory, and a profile never stored is
reconstructed from snapshots of two others within the bound the fit's residual gives."""
import numpy as np
import pytest
from scipy import integrate

from scorelab import posthoc_ema as ema


@pytest.mark.parametrize("sigma_rel", [0.01, 0.05, 0.1, 0.2])
def test_sigma_rel_and_gamma_invert_each_other(sigma_rel):
    gamma = ema.sigma_rel_to_gamma(sigma_rel)
    assert gamma > 0 and ema.gamma_to_sigma_rel(gamma) == pytest.approx(sigma_rel, rel=1e-10)
    # sigma_rel is the profile's standard deviation over T
    p = lambda tau: (gamma + 1) * tau ** gamma
    mean = integrate.quad(lambda u: u * p(u), 0, 1)[0]
    var = integrate.quad(lambda u: u * u * p(u), 0, 1)[0] - mean ** 2
    assert np.sqrt(var) == pytest.approx(sigma_rel, rel=1e-6)
    with pytest.raises(ValueError, match="sigma_rel must be in"):
        ema.sigma_rel_to_gamma(0.3)


def test_profile_dot_is_the_integral_of_the_product():
    for (ta, ga, tb, gb) in [(100, 6.9, 300, 16.9), (300, 6.9, 100, 16.9), (50, 3, 50, 40)]:
        p = lambda tau, t, g: (g + 1) * tau ** g / t ** (g + 1) if tau <= t else 0.0
        direct = integrate.quad(lambda u: p(u, ta, ga) * p(u, tb, gb), 0, min(ta, tb),
                                limit=200)[0]
        assert ema.profile_dot(ta, ga, tb, gb) == pytest.approx(direct, rel=1e-8)


def trajectory(steps: int) -> np.ndarray:
    """A quadratic toy's parameters along training (gradient descent on (theta - c(s))^2 with
    a drifting target c): two coordinates, deterministic."""
    theta, out = np.array([3.0, -1.0]), []
    for s in range(1, steps + 1):
        target = np.array([np.sin(s / 70.0), s / 500.0])
        theta = theta - 0.05 * 2 * (theta - target)
        out.append(theta.copy())
    return np.array(out)


def run_ema(theta: np.ndarray, gamma: float, every: int = 0):
    """The EMA along `theta`, and its snapshots [(step, value)] every `every` steps (float32, as
    stored)."""
    value, snaps = np.zeros(theta.shape[1]), []
    for s, th in enumerate(theta, start=1):
        b = ema.beta(gamma, s)
        value = b * value + (1 - b) * th
        if every and s % every == 0:
            snaps.append((s, value.astype(np.float32)))
    return value, snaps


def test_the_discrete_ema_is_the_profiles_exact_average():
    theta, gamma = trajectory(400), ema.sigma_rel_to_gamma(0.1)
    steps = np.arange(1, 401)
    weights = (steps / 400) ** (gamma + 1) - ((steps - 1) / 400) ** (gamma + 1)
    np.testing.assert_allclose(run_ema(theta, gamma)[0], weights @ theta, rtol=1e-12)


def test_a_third_profile_is_reconstructed_within_the_residual_bound():
    """Snapshots of sigma_rel 0.05 and 0.10 every 50 steps; the EMA of sigma_rel 0.07 (tracked
    directly, never stored) and of 0.15 at the end, reconstructed within |residual| x
    ||theta||_L2 plus the snapshots' float32 rounding."""
    theta = trajectory(2000)
    stored = []
    for sigma_rel in (0.05, 0.10):
        gamma = ema.sigma_rel_to_gamma(sigma_rel)
        stored += [(s, gamma, v) for s, v in run_ema(theta, gamma, every=50)[1]]
    norm = np.sqrt(np.sum(theta ** 2, axis=0))  # ||theta||_L2 over [0, T], per coordinate
    for sigma_rel in (0.07, 0.15):
        gamma = ema.sigma_rel_to_gamma(sigma_rel)
        direct = run_ema(theta, gamma)[0]
        x, residual = ema.solve([(s, g) for s, g, _ in stored], 2000, gamma)
        rebuilt = sum(xi * v.astype(np.float64) for xi, (_, _, v) in zip(x, stored))
        rounding = np.sum(np.abs(x)) * np.finfo(np.float32).eps * np.abs(theta).max()
        error = np.abs(rebuilt - direct)
        assert np.all(error <= residual * norm + rounding), (error, residual * norm)
        assert np.all(error < 1e-4 * np.abs(theta).max())  # measured: 2e-6 to 3e-5
