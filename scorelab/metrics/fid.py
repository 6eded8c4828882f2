"""FID, Inception Score, KID and precision / recall of feature sets, as the reference code
computes them: pytorch-fid for the Frechet distance, torch-fidelity for IS, KID and precision /
recall (its subsets, splits and seeds). Everything here is float64 numpy on the host; the
features come from `scorelab.metrics.inception` (or any other network).
"""
import warnings

import numpy as np
import scipy.linalg
import scipy.special

IS_SEED = KID_SEED = 2020  # torch-fidelity's rng_seed


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) in float64 of (n, d) features; the covariance with n - 1 in the
    denominator, as pytorch-fid's np.cov."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (n, d) with n >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians (Heusel et al.
    2017) as pytorch-fid computes it: eps I is added to both covariances only when the square
    root of their product is not finite (a singular product), and an imaginary part of the
    root's diagonal beyond 1e-3 is an error rather than dropped."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2,
                                                                                    np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2,
                                                                                     np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"means {mu1.shape}, {mu2.shape} and covariances {s1.shape}, "
                         f"{s2.shape} do not match")
    with warnings.catch_warnings():  # a singular product is handled just below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():
        offset = eps * np.eye(len(s1))
        root = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError(f"the matrix square root has an imaginary part of up to "
                             f"{np.max(np.abs(root.imag)):.3g}: the covariances are too "
                             f"ill-conditioned (too few samples for the feature dimension?)")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def inception_score(logits, splits: int = 10, *, shuffle: bool = True,
                    seed: int = IS_SEED) -> tuple[float, float]:
    """(mean, std) over `splits` equal parts of exp(E_x KL(p(y|x) || p(y))), from (n, classes)
    logits (Salimans et al. 2016), as torch-fidelity: rows shuffled by
    np.random.RandomState(seed).permutation, float64 softmax, numpy's population std."""
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or len(z) < splits:
        raise ValueError(f"logits must be (n, classes) with n >= splits={splits}, got shape "
                         f"{z.shape}")
    if shuffle:
        z = z[np.random.RandomState(seed).permutation(len(z))]
    log_p = z - scipy.special.logsumexp(z, axis=1, keepdims=True)
    p = np.exp(log_p)
    n, scores = len(z), []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        log_q = np.log(p[part].mean(axis=0, keepdims=True))
        scores.append(np.exp(np.mean(np.sum(p[part] * (log_p[part] - log_q), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def kid(real, generated, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = KID_SEED) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): (mean, std) over `subsets` random
    subsets of `subset_size` of each set (drawn without replacement, the generated set's first,
    by np.random.RandomState(seed), as torch-fidelity) of the unbiased MMD^2 with the cubic
    polynomial kernel (x . y / d + 1)^3."""
    x, y = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"real and generated must be (n, d) with one d, got {y.shape} and "
                         f"{x.shape}")
    if min(len(x), len(y)) < subset_size or subset_size < 2:
        raise ValueError(f"subset_size={subset_size} must be in [2, the smaller set's size "
                         f"{min(len(x), len(y))}]")
    rng = np.random.RandomState(seed)
    kernel = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3
    m, mmds = subset_size, np.zeros(subsets)
    for i in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        k_aa, k_bb = kernel(a, a), kernel(b, b)
        within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        mmds[i] = within - 2 * kernel(a, b).sum() / (m * m)
    return float(np.mean(mmds)), float(np.std(mmds))


def precision_recall(real, generated, *, k: int = 3,
                     block: int = 256) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): precision is the share of
    generated features within the k-nearest-neighbour ball of some real feature (radius: the
    distance to its k-th nearest other real feature), recall the share of real features within
    a generated one's ball. Distances are computed `block` rows at a time, so no n x n matrix
    is held: block x n float64 at a time (100 MB for 50,000 features)."""
    x, y = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"real and generated must be (n, d) with one d, got {x.shape} and "
                         f"{y.shape}")
    if min(len(x), len(y)) <= k:
        raise ValueError(f"k={k} needs more than k features in each set, got {len(x)} real "
                         f"and {len(y)} generated")
    r_real, r_gen = _knn_radii(x, k, block), _knn_radii(y, k, block)
    return _covered(y, x, r_real, block), _covered(x, y, r_gen, block)


def _squared_distances(a, b):
    d = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def _knn_radii(x, k: int, block: int) -> np.ndarray:
    """Squared distance from each row to its k-th nearest other row (the (k+1)-th smallest,
    counting itself at 0)."""
    return np.concatenate([np.partition(_squared_distances(x[i:i + block], x), k, axis=1)[:, k]
                           for i in range(0, len(x), block)])


def _covered(points, centres, radii, block: int) -> float:
    """The share of `points` within the squared radius `radii` of some row of `centres`."""
    hits = [np.any(_squared_distances(points[i:i + block], centres) <= radii[None, :], axis=1)
            for i in range(0, len(points), block)]
    return float(np.mean(np.concatenate(hits)))
