"""The FID Inception network and the field's metrics against pytorch-fid's and torch-fidelity's
own code (fixtures made by tests/fixtures/inception/make_fixtures.py from seeded random weights
at the real shapes), and closed forms."""
import pathlib
import sys

import jax
import numpy as np
import pytest
import scipy.linalg

from scorelab.metrics import fid, inception, torchfile

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "inception"
sys.path.insert(0, str(FIXTURES))
from random_weights import random_state_dict, fixture_images  # noqa: E402

REF = np.load(FIXTURES / "fixtures.npz")


@pytest.fixture(scope="module")
def params():
    shapes = [tuple(int(d) for d in s.split("x")) if s else () for s in REF["shapes"]]
    state = random_state_dict(list(zip(REF["names"], shapes)), int(REF["seed"]))
    return inception.from_state_dict(state)


@pytest.mark.parametrize("size", [32, 64, 299, 512])
def test_features_match_pytorch_fid(params, size):
    """Pool features and unbiased logits of pytorch-fid's network (its resize and scaling) on
    the same weights, to float32 precision, for inputs smaller and larger than 299."""
    out = inception.apply(params, fixture_images(REF["base"], size))
    for name in ("pool", "logits"):
        ref = REF[f"{name}_{size}"]
        err = np.max(np.abs(np.asarray(out[name]) - ref)) / np.max(np.abs(ref))
        assert err < 2e-5, (name, err)


@pytest.mark.parametrize("mode", inception.RESIZE)
@pytest.mark.parametrize("shape", [(13, 5), (3, 23), (29, 29)])
def test_resize_matches_torch_and_tensorflow1(mode, shape):
    """torch's bilinear (align_corners=False, no antialiasing) and torch-fidelity's port of
    TensorFlow 1's resize_bilinear, up and down."""
    x = REF["resize_input"][0].transpose(1, 2, 0)  # (7, 11, 3)
    rows, cols = (inception.resize_matrix(n, m, mode) for n, m in zip(x.shape[:2], shape))
    got = np.einsum("oh,pw,hwc->opc", rows, cols, x)
    ref = REF[f"resize_{mode}_{shape[0]}x{shape[1]}"][0].transpose(1, 2, 0)
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_resize_modes_differ_and_identity_at_299():
    for mode in inception.RESIZE:
        np.testing.assert_array_equal(inception.resize_matrix(299, 299, mode), np.eye(299))
    a, b = (inception.resize_matrix(32, 299, m) for m in inception.RESIZE)
    assert np.abs(a - b).max() > 0.1
    np.testing.assert_allclose(a.sum(1), 1, atol=1e-6)


def test_state_dict_names_and_shapes_are_pytorch_fids(params):
    """Every name of fid_inception_v3()'s state dict is used, at its shape (a missing, extra or
    misshapen one is refused by name)."""
    state = {n: np.zeros(tuple(int(d) for d in s.split("x")) if s else (), np.float32)
             for n, s in zip(REF["names"], REF["shapes"])}
    inception.from_state_dict(state)
    with pytest.raises(ValueError, match="Mixed_6b.branch7x7_2.conv.weight"):
        inception.from_state_dict({k: v for k, v in state.items()
                                   if k != "Mixed_6b.branch7x7_2.conv.weight"})
    with pytest.raises(ValueError, match="AuxLogits.fc.weight"):
        inception.from_state_dict({**state, "AuxLogits.fc.weight": np.zeros((1008, 768))})
    with pytest.raises(ValueError, match="fc.weight.*shape"):
        inception.from_state_dict({**state, "fc.weight": np.zeros((1000, 2048))})


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torch_files_read_without_torch(fmt):
    """Both torch.save formats, with a strided and an offset tensor, int64 and float16."""
    got = torchfile.load(FIXTURES / f"state_dict_{fmt}.pth")
    ref = np.load(FIXTURES / "state_dict.npz")
    assert list(got) == list(ref)
    for k in ref:
        assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
        np.testing.assert_array_equal(got[k], ref[k])


def test_torch_file_errors(tmp_path):
    data = (FIXTURES / "state_dict_legacy.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        torchfile.load(tmp_path / "cut.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a torch.save file"):
        torchfile.load(tmp_path / "text.pth")


def test_load_params_names_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth.*6726825d"
                       ".*fid_weights"):
        inception.load_params(tmp_path / "nowhere.pth")
    monkeypatch.setenv(inception.ENV, str(FIXTURES / "state_dict_zip.pth"))
    with pytest.warns(UserWarning, match="does not begin with 6726825d"), \
            pytest.raises(ValueError, match="has no 'Conv2d_1a_3x3.*not pytorch-fid's"):
        inception.load_params()


# ---- the metrics: parity with the reference code ----

def test_frechet_distance_matches_pytorch_fid():
    real, fake = REF["real"].astype(np.float64), REF["fake"].astype(np.float64)
    d = fid.frechet_distance(*fid.statistics(real), *fid.statistics(fake))
    assert d == pytest.approx(float(REF["fid"]), rel=1e-6)


def test_inception_score_matches_torch_fidelity():
    mean, std = fid.inception_score(REF["is_logits"].astype(np.float64), splits=10)
    np.testing.assert_allclose([mean, std], REF["isc"], rtol=1e-6)


def test_kid_matches_torch_fidelity():
    real, fake = REF["real"].astype(np.float64), REF["fake"].astype(np.float64)
    got = fid.kid(real, fake, subsets=50, subset_size=200)
    np.testing.assert_allclose(got, REF["kid"], rtol=1e-6)


def test_precision_recall_matches_torch_fidelity():
    real, fake = REF["real"].astype(np.float64), REF["fake"].astype(np.float64)
    for block in (7, 256):  # blocks of any size give the same answer
        np.testing.assert_allclose(fid.precision_recall(real, fake, k=3, block=block),
                                   REF["prc"], rtol=1e-6)


# ---- closed forms ----

def test_frechet_distance_of_two_gaussians():
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) for random SPD matrices."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 6, 6))
    s1, s2 = a @ a.T + np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.standard_normal((2, 6))
    r1 = scipy.linalg.sqrtm(s1).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(
        r1 @ s2 @ r1).real)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # a singular product (rank-deficient covariances) stays finite, as in pytorch-fid
    s = np.outer([1., 2., 0.], [1., 2., 0.])
    assert np.isfinite(fid.frechet_distance(np.zeros(3), s, np.ones(3), s))


def test_inception_score_closed_forms():
    """Uniform predictions score 1; confident predictions spread evenly over C classes score C."""
    assert fid.inception_score(np.zeros((100, 10)), splits=5) == pytest.approx((1.0, 0.0))
    one_hot = 50.0 * np.eye(10)[np.arange(200) % 10]
    mean, std = fid.inception_score(one_hot, splits=1)
    assert mean == pytest.approx(10.0, rel=1e-9) and std == 0


def test_kid_of_one_gaussian_is_zero_within_its_error():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 2000, 16))
    mean, std = fid.kid(a, b, subsets=50, subset_size=500)
    assert abs(mean) < 3 * std / np.sqrt(50) + 1e-12
    shifted = fid.kid(a, b + 0.5, subsets=50, subset_size=500)[0]
    assert shifted > 20 * std


def test_precision_recall_closed_cases():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 4))
    assert fid.precision_recall(a, a) == (1.0, 1.0)
    far = fid.precision_recall(a, a + 100.0)
    assert far == (0.0, 0.0)
    # real data in two far-apart clusters, generated data in one (mode dropping): every
    # generated point is covered, exactly the real half in the generated cluster is
    real = np.concatenate([a, a + 100.0])
    assert fid.precision_recall(real, a) == (1.0, 0.5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="resize must be one of"):
        inception.preprocess(np.zeros((1, 8, 8, 3), np.uint8), "nearest")
    with pytest.raises(ValueError, match="subset_size=1000"):
        fid.kid(np.zeros((10, 3)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="k=3"):
        fid.precision_recall(np.zeros((3, 2)), np.zeros((9, 2)))
