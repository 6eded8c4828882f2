"""Power-function EMA profiles and their post-hoc reconstruction (Karras et al. 2024, EDM2).

An EMA with exponent gamma, updated at steps s = 1, 2, ... as

    ema_s = beta_s ema_{s-1} + (1 - beta_s) theta_s,    beta_s = (1 - 1/s)^(gamma + 1),

gives step s the weight (s/T)^(gamma+1) - ((s-1)/T)^(gamma+1) at step T (the product of the
betas telescopes). That is exactly the integral over (s-1, s] of the profile

    p_{T,gamma}(tau) = (gamma + 1) tau^gamma / T^(gamma+1)    on [0, T],

so the EMA equals the profile's average of the trajectory theta(tau) = theta_s on (s-1, s],
with no discretisation error. Its length is sigma_rel, the profile's standard deviation over T:
sigma_rel^2 = (gamma+1) / ((gamma+2)^2 (gamma+3)).

Snapshots of EMAs of a few profiles, taken along training, reconstruct the EMA of any other
profile: the weights x minimising the L2 distance between sum_i x_i p_i and the target profile
solve A x = b with A_ij = <p_i, p_j>, b_i = <p_i, p_target>, and the reconstruction is
sum_i x_i ema_i. By Cauchy-Schwarz its error in any coordinate is at most the profiles' L2
residual times the trajectory's L2 norm over [0, T] (`solve`'s residual).
"""
import numpy as np


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent of the profile whose relative standard deviation is `sigma_rel`, in
    (0, 0.2887): the largest real root of (gamma+1) = s^2 (gamma+2)^2 (gamma+3)."""
    s2 = float(sigma_rel) ** 2
    if not 0 < sigma_rel < gamma_to_sigma_rel(0.0):
        raise ValueError(f"sigma_rel must be in (0, {gamma_to_sigma_rel(0.0):.4f}) (gamma > 0),"
                         f" got {sigma_rel}")
    # s^2 (g^3 + 7 g^2 + 16 g + 12) - (g + 1) = 0
    roots = np.roots([s2, 7 * s2, 16 * s2 - 1, 12 * s2 - 1])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9))


def gamma_to_sigma_rel(gamma: float) -> float:
    return float(np.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))))


def beta(gamma: float, step):
    """The decay at `step` (counted from 1) of the EMA with exponent `gamma`; 0 at step 1."""
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def profile_dot(t_a, gamma_a, t_b, gamma_b):
    """<p_{t_a,gamma_a}, p_{t_b,gamma_b}> in L2(0, inf): the integral of their product."""
    t_a, t_b = np.asarray(t_a, np.float64), np.asarray(t_b, np.float64)
    ratio = np.minimum(t_a, t_b) / np.maximum(t_a, t_b)
    later = np.where(t_a < t_b, gamma_b, gamma_a)  # the exponent of the later profile
    return ((gamma_a + 1) * (gamma_b + 1) * ratio ** later
            / ((gamma_a + gamma_b + 1) * np.maximum(t_a, t_b)))


def solve(snapshots: list[tuple[float, float]], t: float, gamma: float):
    """(weights x, L2 residual) of the target profile (t, gamma) reconstructed from snapshot
    profiles [(t_i, gamma_i), ...] in the least-squares sense."""
    ts, gs = (np.array(v, np.float64) for v in zip(*snapshots))
    a = profile_dot(ts[:, None], gs[:, None], ts[None, :], gs[None, :])
    b = profile_dot(ts, gs, t, gamma)
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    squared = x @ a @ x - 2 * x @ b + profile_dot(t, gamma, t, gamma)
    return x, float(np.sqrt(max(squared, 0.0)))
