"""Series: window stitching against the Kalman smoother of a Gaussian AR(1) process (its exact
window score, no network); series files, block masks, and a run that fills and forecasts."""
import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import series as series_config
from samplers import pc_sample
from samplers.series import fill_series
from scorelab.inputs import impute
from scorelab.loop import train
from sde import VPSDE, target_cells

PHI = np.array([0.8, 0.5])  # two independent AR(1) features, stationary variance 1


def ar1_covariance(window: int) -> np.ndarray:
    """The (W F, W F) covariance of a window, cells in (time, feature) order."""
    lags = np.abs(np.subtract.outer(np.arange(window), np.arange(window)))
    blocks = [phi ** lags for phi in PHI]
    cov = np.zeros((window, 2, window, 2))
    for f, block in enumerate(blocks):
        cov[:, f, :, f] = block
    return cov.reshape(2 * window, 2 * window)


def rts_smoother(y: np.ndarray, observed: np.ndarray, phi: float):
    """Posterior means and variances of a stationary AR(1), x_t = phi x_(t-1) + sqrt(1 - phi^2)
    e_t, given exact observations (no noise): the Kalman filter and the Rauch-Tung-Striebel
    smoother."""
    q, steps = 1 - phi ** 2, len(y)
    m, p = np.zeros(steps), np.zeros(steps)
    m_pred, p_pred = np.zeros(steps), np.zeros(steps)
    for t in range(steps):
        m_pred[t], p_pred[t] = (0.0, 1.0) if t == 0 else (phi * m[t - 1], phi ** 2 * p[t - 1] + q)
        m[t], p[t] = (y[t], 0.0) if observed[t] else (m_pred[t], p_pred[t])
    for t in range(steps - 2, -1, -1):
        gain = p[t] * phi / p_pred[t + 1]
        m[t] += gain * (m[t + 1] - m_pred[t + 1])
        p[t] += gain ** 2 * (p[t + 1] - p_pred[t + 1])
    return m, p


def exact_window_draw(window: int, num_steps: int):
    """`draw(y, mask, key)` by the reverse diffusion (the VP SDE's chain, `num_steps` steps)
    with the exact conditional score of the window given its cells where mask is True: x0 of
    the others is N(mu_c, S_c), so at time t the score is -(m^2 S_c + std^2 I)^-1 (x - m mu_c)
    (S_c is 0 on the given cells, whose x is reset to y at the end)."""
    sde, cov = VPSDE(), jnp.asarray(ar1_covariance(window), jnp.float32)

    @jax.jit
    def draw(y, mask, key):
        g = mask[0].reshape(-1).astype(jnp.float32)  # the same cells in every draw
        inner = g[:, None] * cov * g[None] + jnp.diag(1 - g)
        gain = cov * g[None] @ jnp.linalg.inv(inner)
        mean = (g * y.reshape(len(y), -1)) @ gain.T
        lam, vec = jnp.linalg.eigh(cov - gain @ (g[:, None] * cov))

        def score(x, t):
            mc, std = sde.mean_coeff(t)[:, None], sde.std(t)[:, None]
            r = (x.reshape(len(x), -1) - mc * mean) @ vec
            return (-(r / (mc ** 2 * jnp.maximum(lam, 0) + std ** 2)) @ vec.T).reshape(x.shape)
        x, _ = pc_sample(sde, score, y.shape, key, corrector="none", num_steps=num_steps)
        return jnp.where(mask, y, x)
    return draw


def test_stitched_windows_draw_the_kalman_smoothers_posterior():
    """A 120-step series of two AR(1) features (phi 0.8 and 0.5) with 20% of cells missing at
    random, a 5-step gap and a 45-step gap (longer than the 32-step window) in the first
    feature, and a 12-step gap in the second; 512 stitched draws against the smoother's
    posterior of every missing cell. With exact draws the mean's error is N(0, var / 512): the
    RMS of the z-scores would be 1 (measured 0.90, largest |z| 2.6; the look-ahead's truncation
    0.8^24 is below 1e-2 of a posterior std), the draws' variance / the smoother's variance
    1 +- 0.06 per cell (measured mean 1.02, 0.90 to 1.14). Windows without context (each block
    drawn ignoring the cells drawn before it) give RMS z 1.35 and |z| up to 5.0; a look-ahead
    of 2 steps (context 8, stride 22) 1.33 and 5.3."""
    rng = np.random.default_rng(0)
    steps, window, n = 120, 32, 512
    truth = np.zeros((steps, 2))
    for t in range(steps):
        e = rng.normal(size=2) * np.sqrt(1 - PHI ** 2)
        truth[t] = e if t == 0 else PHI * truth[t - 1] + e
    truth[0] /= np.sqrt(1 - PHI ** 2)  # stationary start
    observed = rng.random((steps, 2)) > 0.2
    observed[10:15, 0] = observed[50:95, 0] = observed[30:42, 1] = False
    draws = fill_series(exact_window_draw(window, 500), truth, observed, window=window,
                        key=jax.random.key(1), draws=n)
    assert draws.shape == (n, steps, 2)
    np.testing.assert_array_equal(draws[:, observed], np.broadcast_to(
        truth[observed].astype(np.float32), (n, observed.sum())))
    z, ratio = [], []
    for f, phi in enumerate(PHI):
        mean, var = rts_smoother(truth[:, f], observed[:, f], phi)
        hole = ~observed[:, f]
        z.append((draws[:, hole, f].mean(0) - mean[hole]) / np.sqrt(var[hole] / n))
        ratio.append(draws[:, hole, f].var(0) / var[hole])
    z, ratio = np.concatenate(z), np.concatenate(ratio)
    assert np.sqrt(np.mean(z ** 2)) < 1.2, f"RMS z {np.sqrt(np.mean(z ** 2)):.2f}"
    assert np.abs(z).max() < 4
    assert 0.95 < ratio.mean() < 1.05, f"variance ratio {ratio.mean():.3f}"
    assert np.all((0.7 < ratio) & (ratio < 1.3))


@pytest.mark.parametrize("kwargs, message", [
    (dict(window=8, context=4, stride=5), r"context \+ stride <= window"),
    (dict(window=1), "window >= 2"),
])
def test_fill_series_refuses_bad_windows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fill_series(None, np.zeros((10, 1)), np.ones((10, 1), bool), key=jax.random.key(0),
                    **kwargs)


def write_series(path, rows, header=("date", "a", "b")):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def ar1_rows(steps: int, seed: int = 0, holes: float = 0.1):
    """Daily rows of two correlated AR(1) features with `holes` of their cells empty."""
    rng = np.random.default_rng(seed)
    x = np.zeros((steps, 2))
    for t in range(1, steps):
        x[t] = PHI * x[t - 1] + rng.normal(size=2) * np.sqrt(1 - PHI ** 2)
    day = np.datetime64("2020-01-01")
    return [[str(day + t)] + ["" if rng.random() < holes else f"{v:.4f}" for v in row]
            for t, row in enumerate(x)]


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[:5] + [rows[6], rows[5]] + rows[7:],
     "line 8: time stamp '2020-01-06' is not after the one before it ('2020-01-07')"),
    (lambda rows: [[r[0], "", r[2]] for r in rows], "columns ['a'] are empty"),
    (lambda rows: rows[:3] + [[rows[3][0], "high", rows[3][2]]] + rows[4:],
     "line 5, column 'a': 'high' is not a number"),
    (lambda rows: rows[:3] + [["March", *rows[3][1:]]] + rows[4:],
     "line 5: time stamp 'March' is neither a number nor an ISO date"),
    (lambda rows: rows[:40], "40 time steps; with data.window=32 a series needs at least 64"),
])
def test_bad_series_files_are_refused_before_training(tmp_path, edit, message):
    write_series(tmp_path / "s.csv", edit(ar1_rows(200)))
    config = series_config.get_config()
    config.data.path = str(tmp_path / "s.csv")
    with pytest.raises(ValueError) as info:
        train(config, tmp_path / "run")
    assert message in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_block_masks_hide_consecutive_steps():
    """"blocks": per row, either a random share of cells or one run of consecutive steps on
    some of the features, only among observed cells."""
    observed = jax.random.uniform(jax.random.key(0), (512, 16, 3)) < 0.9
    chosen = np.asarray(target_cells(jax.random.key(1), observed, "blocks"))
    assert not (chosen & ~np.asarray(observed)).any()
    steps = chosen.any(axis=2)  # (rows, steps)
    runs = [np.flatnonzero(np.diff(np.r_[0, s.astype(int), 0])) for s in steps]
    single = np.array([len(r) <= 2 for r in runs])  # one run of steps (or none)
    assert 0.45 < single.mean() < 0.8  # the blocks, and random rows that happen to be one run
    with pytest.raises(ValueError, match="needs rows of"):
        target_cells(jax.random.key(1), observed.reshape(512, -1), "blocks")


def test_series_run_fills_and_forecasts_a_file_of_any_length(tmp_path):
    """A tiny series run, then `impute` of a 150-step file with a 20-step gap
    and a 6-step forecast: stamps and given cells come back as the same text, the forecast's
    stamps continue daily, every filled cell is finite and inside its 10-90% band."""
    rows = ar1_rows(300)
    write_series(tmp_path / "train.csv", rows)
    config = series_config.get_config()
    config.data.path = str(tmp_path / "train.csv")
    config.model.series.update(channels=16, depth=1)
    config.training.update(n_steps=20, log_every=10, checkpoint_every=20, select_every=10)
    train(config, tmp_path / "run")
    given = ar1_rows(150, seed=1)
    for row in given[60:80]:
        row[1] = ""
    write_series(tmp_path / "in.csv", given)
    out = impute(tmp_path / "run", input=str(tmp_path / "in.csv"),
                 output=str(tmp_path / "out.csv"), draws=4, num_steps=25, horizon=6,
                 quantiles=(0.1, 0.9))
    assert out["method"] == "conditional" and out["nfe"] == 26
    with open(tmp_path / "out.csv", newline="") as f:
        filled = list(csv.reader(f))[1:]
    assert len(filled) == 156 and [r[0] for r in filled[150:]] == [
        f"2020-05-{d}" for d in range(30, 32)] + [f"2020-06-0{d}" for d in range(1, 5)]
    assert all(f == g for row, out_row in zip(given, filled) for g, f in zip(row, out_row) if g)
    low, high = (np.array([[float(c) for c in r[1:]] for r in list(csv.reader(open(
        tmp_path / f"out_q{q}.csv")))[1:]]) for q in (0.1, 0.9))
    values = np.array([[float(c) for c in r[1:]] for r in filled])
    assert np.isfinite(values).all() and np.all((low <= values) & (values <= high))
