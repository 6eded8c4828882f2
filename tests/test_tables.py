"""Tables: the CSV source with missing cells, the masked loss, `impute` and `score`."""
import csv
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import table
from scorelab import data, inputs
from scorelab.config import ConfigError
from scorelab.data import tables
from scorelab.inputs import impute, score
from scorelab.loop import train
from sde import VPSDE, dsm_loss
from tests.test_layout import ROOT


def write_rows(path, columns, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([columns, *rows])


def test_bundled_table_loads_standardised_with_a_complete_held_out_split():
    d = data.load("csv")
    assert d.train.shape == (512, 30) and d.test.shape == (57, 30) and not d.is_image
    np.testing.assert_allclose(d.train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(d.train.std(0), 1, atol=1e-4)
    raw = tables.read(tables.BUNDLED).values
    np.testing.assert_allclose(d.table.to_data(d.test[:1]), raw[np.all(
        np.isclose(raw, d.table.to_data(d.test[:1])), axis=1)], rtol=1e-6)


def test_missing_cells_are_nan_and_stay_out_of_the_training_statistics(tmp_path):
    path = tmp_path / "t.csv"
    write_rows(path, ["a", "b"], [["1", ""], ["3", "10"], ["5", "20"], ["", "30"], ["7", "40"]])
    train, test, stats = tables.load_csv(str(path))
    assert np.isnan(train).sum() + np.isnan(test).sum() == 2 and not np.isnan(test).any()
    rows = np.concatenate([train, test])
    observed = stats.to_data(rows)
    assert set(observed[:, 0][~np.isnan(observed[:, 0])].round(6)) <= {1, 3, 5, 7}
    # no complete row (many missing cells): 10% of all rows are held out, holes and all
    write_rows(path, ["a", "b"], [[str(i), ""] if i % 2 else ["", str(i)] for i in range(40)])
    train, test, _ = tables.load_csv(str(path))
    assert len(test) == 4 and len(train) == 36 and np.isnan(test).sum() == 4
    with pytest.raises(ValueError, match="line 3, column 'b': 'x' is not a number"):
        write_rows(path, ["a", "b"], [["1", "2"], ["3", "x"]])
        tables.read(path)
    with pytest.raises(ValueError, match="line 2: 1 cells, but the header names 2"):
        write_rows(path, ["a", "b"], [["1"]])
        tables.read(path)


def test_masked_loss_counts_only_observed_entries():
    """With an elementwise score, the masked loss is the per-sample mean of the squared
    residual over the observed entries, whatever the unobserved entries hold."""
    sde, key = VPSDE(), jax.random.key(0)
    x0 = jax.random.normal(jax.random.key(1), (64, 5))
    observed = jax.random.uniform(jax.random.key(2), (64, 5)) < 0.6
    score_fn = lambda p, x, t: -x
    loss = dsm_loss(sde, score_fn, None, x0, key, observed=observed)
    k_t, k_z = jax.random.split(key)
    t = jax.random.uniform(k_t, (64,), minval=1e-5, maxval=1.0)
    z = jax.random.normal(k_z, x0.shape)
    std = sde.std(t)[:, None]
    residual = jnp.square(std * -(sde.mean_coeff(t)[:, None] * x0 + std * z) + z)
    expected = jnp.mean(jnp.sum(residual * observed, 1) / jnp.maximum(observed.sum(1), 1))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    moved = jnp.where(observed, x0, 100.0)
    np.testing.assert_allclose(dsm_loss(sde, score_fn, None, moved, key, observed=observed),
                               loss, rtol=1e-6)
    full = dsm_loss(sde, score_fn, None, x0, key, observed=jnp.ones_like(observed))
    np.testing.assert_allclose(full, dsm_loss(sde, score_fn, None, x0, key), rtol=1e-6)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A tiny run on a copy of the bundled table with 10% of the first five columns' cells
    emptied."""
    root = tmp_path_factory.mktemp("table")
    source = tables.read(tables.BUNDLED)
    rng = np.random.default_rng(0)
    cells = [["" if j < 5 and rng.random() < 0.1 else c for j, c in enumerate(row)]
             for row in source.cells]
    tables.write(root / "holes.csv", source.columns, cells)
    config = table.get_config()
    config.data.path = str(root / "holes.csv")
    config.model.conditional_cells = False  # the unconditional imputers' run
    config.model.mlp.update(hidden=32, depth=2)
    config.training.update(n_steps=40, log_every=20, eval_every=0, checkpoint_every=40)
    config.sampling.pc.update(num_steps=50, corrector="none")
    train(config, root / "run")
    return root


def test_impute_fills_only_empty_cells_and_keeps_the_given_text(table_run):
    source = tables.read(table_run / "holes.csv")
    head = [source.columns] + source.cells[:12]
    write_rows(table_run / "in.csv", *head[:1], head[1:])
    proc = subprocess.run([sys.executable, "train.py", "impute", f"--workdir={table_run / 'run'}",
                           f"--input={table_run / 'in.csv'}", f"--output={table_run / 'out.csv'}",
                           "--draws=2", "--num_steps=20"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    filled = tables.read(table_run / "out.csv")
    assert filled.columns == source.columns
    for given, out in zip(source.cells[:12], filled.cells):
        for g, o in zip(given, out):
            # the 40-step network's values are only finite: the truth is checked by
            # test_impute_recovers_hidden_cells_of_a_known_table
            assert o == g if g else np.isfinite(float(o))
    assert f"filled {sum(c == '' for r in source.cells[:12] for c in r)} empty cells" in proc.stdout


@pytest.mark.parametrize("method", ["projection", "smc"])
def test_impute_recovers_hidden_cells_of_a_known_table(table_run, monkeypatch, tmp_path, method):
    """`impute`'s reading, standardising, masking, draws and un-standardising, against the
    truth: one cell hidden in each of 200 complete rows of the bundled table. The score is the
    exact one of the Gaussian fitted to its other 369 rows (in the run's standardised units, the
    N(m mu, m^2 S + std^2 I) marginal of the VP SDE), standing in for the 40-step network, which
    is far from trained, so the cells' exact conditionals are known (mean error 0.29 column stds
    from the truth, posterior std 0.25 on average).
    projection, the mean of 8 draws: RMSE 0.43 against the truth where column means give 1.11
    (also what a mask that hides the observed cells gives), cells written one row off 1.50,
    values left in standardised units 81.
    smc, one draw of 64 particles: its RMS distance to the exact conditional mean is 1.30 exact
    posterior stds (one exact draw: 1; the projection method's one draw: 2.08, 16 particles
    1.52), so the weights do the work."""
    stats = tables.Standardizer.load(table_run / "run" / "table.json")
    source = tables.read(tables.BUNDLED)
    z = stats.to_model(source.values).astype(np.float64)
    rng = np.random.default_rng(1)
    rows, others = np.split(rng.permutation(len(z)), [200])  # imputed; fitted
    mu = jnp.asarray(z[others].mean(0), jnp.float32)
    cov = jnp.asarray(np.cov(z[others], rowvar=False), jnp.float32)

    def gaussian_score(config, run, state, command):
        def score(x, t):
            m, std = run.sde.mean_coeff(t)[:, None, None], run.sde.std(t)[:, None, None]
            marginal = m**2 * cov + std**2 * jnp.eye(cov.shape[0])
            return -jnp.linalg.solve(marginal, (x - m[..., 0] * mu)[..., None])[..., 0]
        return score
    monkeypatch.setattr(inputs, "_unconditional_score", gaussian_score)

    hidden = rng.integers(0, z.shape[1], len(rows))
    cells = [list(source.cells[r]) for r in rows]
    for row, j in zip(cells, hidden):
        row[j] = ""
    write_rows(tmp_path / "in.csv", source.columns, cells)
    options = (dict(draws=8, quantiles=(0.1, 0.9)) if method == "projection" else
               dict(draws=1, num_particles=64))
    out = impute(table_run / "run", input=str(tmp_path / "in.csv"),
                 output=str(tmp_path / "out.csv"), num_steps=20, method=method, **options)
    assert out["method"] == method and out["nfe"] == 21
    filled = tables.read(tmp_path / "out.csv").values[np.arange(len(rows)), hidden]
    truth = source.values[rows, hidden]
    in_stds = lambda values: (values - truth) / stats.std[hidden]
    rmse = lambda values: np.sqrt(np.mean(np.square(in_stds(values))))
    s, m = np.asarray(cov, np.float64), np.asarray(mu, np.float64)
    mean, var = np.empty(len(rows)), np.empty(len(rows))  # the exact conditionals, in stds
    for i, (r, j) in enumerate(zip(rows, hidden)):
        o = np.arange(z.shape[1]) != j
        gain = np.linalg.solve(s[np.ix_(o, o)], s[o, j])
        mean[i], var[i] = m[j] + gain @ (z[r, o] - m[o]), s[j, j] - s[j, o] @ gain
    if method == "projection":
        imputed, column_mean = rmse(filled), rmse(stats.mean[hidden])
        assert column_mean > 1.0  # the baseline this must beat by far
        assert imputed < 0.5 * column_mean, f"RMSE {imputed:.3f}, column means {column_mean:.3f}"
        # the 10% and 90% quantiles of the draws, given cells as given, around their mean
        # (their width: test_imputation.py, with exact conditional draws)
        low, high = (tables.read(tmp_path / f"out_q{q}.csv") for q in (0.1, 0.9))
        assert low.cells[0][:hidden[0]] == cells[0][:hidden[0]]
        low, high = (f.values[np.arange(len(rows)), hidden] for f in (low, high))
        assert np.all(low <= filled) and np.all(filled <= high)
        return
    drawn = (filled - stats.mean[hidden]) / stats.std[hidden]
    ratio = np.sqrt(np.mean(np.square(drawn - mean)) / np.mean(var))
    assert 0.9 < ratio < 1.45, f"one draw's distance to the exact mean / posterior std {ratio:.2f}"


def test_score_writes_one_column_per_method(table_run):
    """method="all": nats, the score norms' Gaussian NLL, the ratio (nats minus those of a
    Gaussian fitted to the training rows) and the reconstruction
    error, one finite value per row; auto is msma alone; "ratio,likelihood" those two."""
    complete = [r for r in tables.read(tables.BUNDLED).cells[:6]]
    write_rows(table_run / "complete.csv", tables.read(tables.BUNDLED).columns, complete)
    values = score(table_run / "run", input=str(table_run / "complete.csv"),
                   output=str(table_run / "all.csv"), batch_size=4, method="all")
    with open(table_run / "all.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["index", "nll_nats", "msma", "ratio", "reconstruction"]
    written = np.array(rows, float)[:, 1:]
    assert written.shape == (6, 4) and np.isfinite(written).all()
    np.testing.assert_allclose(written, np.stack(list(values.values()), 1), rtol=1e-5)
    alone = score(table_run / "run", input=str(table_run / "complete.csv"),
                  output=str(table_run / "msma.csv"), batch_size=4)
    assert list(alone) == ["msma"]
    np.testing.assert_allclose(alone["msma"], values["msma"], rtol=1e-5)
    pair = score(table_run / "run", input=str(table_run / "complete.csv"),
                 output=str(table_run / "pair.csv"), batch_size=4, method="ratio,likelihood")
    assert sorted(pair) == ["likelihood", "ratio"]
    for name in pair:
        np.testing.assert_allclose(pair[name], values[name], rtol=1e-5)


@pytest.mark.parametrize("command, options, message", [
    ("impute", dict(columns=["a", "b"]), "its columns do not match the run's 30 columns"),
    ("impute", dict(output="same"), "is the input file"),
    ("impute", dict(draws=0), "--draws must be >= 1"),
    ("impute", dict(method="tweedie"), "--method must be one of ['auto', 'conditional', "),
    ("impute", dict(method="conditional"), "needs a run trained with model.conditional_cells"),
    ("impute", dict(num_particles=4), "--num_particles=4 needs --method=smc"),
    ("impute", dict(quantiles="0.1,1.5"), "--quantiles must be numbers in (0, 1), got [0.1, 1.5]"),
    ("impute", dict(quantiles="0.9", draws=1), "--quantiles needs --draws >= 2"),
    ("score", dict(holes=True), "has empty cells; score needs complete rows"),
    ("score", dict(method="density"), "--method must be one of ['auto', 'likelihood', "),
    ("score", dict(method="msma,all"), "or several of ['likelihood', 'msma', 'ratio', "),
    ("score", dict(maps="m.npz"), "--maps writes the reconstruction's per-pixel maps"),
])
def test_bad_table_inputs_are_named(table_run, tmp_path, command, options, message):
    source = tables.read(tables.BUNDLED)
    columns = options.get("columns", source.columns)
    rows = [r[:len(columns)] for r in source.cells[:3]]
    if options.get("holes"):
        rows[1][2] = ""
    write_rows(tmp_path / "in.csv", columns, rows)
    output = tmp_path / "in.csv" if options.get("output") else tmp_path / "out.csv"
    run = impute if command == "impute" else score
    kwargs = {k: options[k] for k in ("draws", "method", "num_particles", "quantiles", "maps")
              if k in options}
    with pytest.raises(ConfigError) as info:
        run(table_run / "run", input=str(tmp_path / "in.csv"), output=str(output), **kwargs)
    assert message in str(info.value)
    assert not (tmp_path / "out.csv").exists()
