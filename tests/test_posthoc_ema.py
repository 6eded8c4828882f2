"""Power-function EMA profiles (scorelab.posthoc_ema) against closed forms: the discrete EMA is
the profile's exact average of a piecewise-constant trajectory, and a profile never stored is
reconstructed from snapshots of two others within the bound the fit's residual gives."""
import json

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


def test_training_tracks_profiles_that_rebuild_an_untracked_one(tmp_path):
    """The train step's profiles on the toy MLP: 0.07 is tracked in the state but rebuilt from
    snapshots of 0.05 and 0.10 alone, within residual x ||theta||_L2 (accumulated along the
    run) plus float32 rounding; `train.py ema` then gives every command its reconstruction."""
    import jax

    from scorelab import data
    from scorelab.commands import posthoc_ema, restore
    from scorelab.loop import train
    from scorelab.step import make_mesh
    from scorelab.workdir import snapshot_manager
    from tests.test_train import toy_config, toy_step

    config = toy_config()
    config.training.ema_profiles = (0.05, 0.10, 0.07)
    step, state, dataset = toy_step(config)
    flat = lambda tree: np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])
    squares, stored = 0.0, []
    for s in range(1, 301):
        state, _ = step(state, data.host_batch(dataset, s - 1, batch_size=64, seed=0))
        squares = squares + flat(state.params).astype(np.float64) ** 2
        if s % 30 == 0:
            stored += [(s, ema.sigma_rel_to_gamma(r), flat(state.ema_profiles[f"{r:g}"]))
                       for r in (0.05, 0.10)]
    x, residual = ema.solve([(s, g) for s, g, _ in stored], 300, ema.sigma_rel_to_gamma(0.07))
    rebuilt = sum(xi * v.astype(np.float64) for xi, (_, _, v) in zip(x, stored))
    tracked = flat(state.ema_profiles["0.07"]).astype(np.float64)
    scale = max(np.abs(v).max() for _, _, v in stored)
    bound = residual * np.sqrt(squares) + 8 * np.sum(np.abs(x)) * np.finfo(np.float32).eps * scale
    assert np.all(np.abs(rebuilt - tracked) <= bound)
    assert np.abs(rebuilt - tracked).max() < 1e-2 * scale

    config = toy_config(n_steps=20)
    config.training.ema_snapshot_every = 5
    train(config, tmp_path)
    info = posthoc_ema(tmp_path, sigma_rel=0.08)
    assert info["snapshots"] == 4 and info["step"] == 20 and info["residual"] < 0.05
    _, _, state, step_ = restore(tmp_path, make_mesh())  # what every command loads
    saved = json.loads((tmp_path / "ema" / "info.json").read_text())
    assert step_ == 20 and saved == info
    gammas = [ema.sigma_rel_to_gamma(r) for r in (0.05, 0.10)]
    weights, _ = ema.solve([(t, g) for t in (5, 10, 15, 20) for g in gammas], 20,
                           ema.sigma_rel_to_gamma(0.08))
    snapshots = snapshot_manager(tmp_path)
    values = [flat(snapshots.restore(t)[f"{r:g}"]) for t in (5, 10, 15, 20) for r in (0.05, 0.1)]
    expected = sum(w * v.astype(np.float64) for w, v in zip(weights, values))
    np.testing.assert_allclose(flat(state.ema_params), expected, rtol=1e-5, atol=1e-6)
