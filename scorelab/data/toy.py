"""Low-dimensional toy data generated in code: float32 points of shape (n, 2)."""
import numpy as np

from sde.mixture import GaussianMixture

# The analytic mixture: its exact score and log-density are known under every SDE.
MIXTURE = dict(weights=[0.3, 0.7], means=[[-2.0, 0.0], [2.0, 1.0]], stds=[0.3, 0.5])


def analytic_mixture() -> GaussianMixture:
    return GaussianMixture.create(**MIXTURE)


def mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    comp = rng.choice(2, size=n, p=MIXTURE["weights"])
    means, stds = np.asarray(MIXTURE["means"]), np.asarray(MIXTURE["stds"])
    return means[comp] + stds[comp, None] * rng.standard_normal((n, 2))


def moons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved half circles with 0.05 noise, centred."""
    upper = rng.random(n) < 0.5
    angle = rng.random(n) * np.pi
    x = np.where(upper, np.cos(angle), 1 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    pts = np.stack([x - 0.5, y - 0.25], axis=1) * 2
    return pts + 0.1 * rng.standard_normal((n, 2))


def swiss_roll(rng: np.random.Generator, n: int) -> np.ndarray:
    """The 2-D Swiss roll: radius growing with the angle, scaled to about unit spread."""
    angle = 1.5 * np.pi * (1 + 2 * rng.random(n))
    pts = np.stack([angle * np.cos(angle), angle * np.sin(angle)], axis=1) / 5
    return pts + 0.05 * rng.standard_normal((n, 2))


def checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on the dark squares of a 4x4 board on [-2, 2]^2."""
    x = rng.random(n) * 4 - 2
    col = np.floor(x) + 2
    row = rng.integers(0, 2, n) * 2 + (col % 2)
    y = row - 2 + rng.random(n)
    return np.stack([x, y], axis=1)
