"""The SDE comparison runner end to end on the analytic mixture, with tiny settings."""
import json
import math
import os
import subprocess
import sys

import pytest

from configs import compare_mixture
from scorelab.compare import _weight_error, cells_of, check_compare, quick_config
from scorelab.config import ConfigError
from tests.test_layout import ROOT

TINY = {"compare.run_variants": ("vp", "ddpm", "ncsn"),  # continuous, discrete VP and VE
        "compare.samplers": ("ancestral", "ald", "ode_dpmpp_2m", "ode_adaptive"),
        # The assertions are structural (which cells, once each, finite, files written), so
        # the runs are as short as the runner allows.
        "compare.quick.n_steps": 40, "compare.quick.budgets": (22,),
        "compare.quick.num_samples": 100, "compare.quick.num_likelihood": 8,
        "compare.quick.eval_steps": 25}  # DDPM needs N > beta_max


def run_compare(workdir, **changes):
    """`train.py compare --quick` with the TINY settings (and `changes`), in a process of its
    own with one CPU device (the suite's four share two cores); returns results.json."""
    flags = [f"--config.{k}={v!r}" for k, v in {**TINY, **changes}.items()]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "train.py", "compare", "--quick",
                           "--config=configs/compare_mixture.py", f"--workdir={workdir}",
                           *flags], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((workdir / "results.json").read_text())


def expected_cells(**changes):
    config = compare_mixture.get_config()
    for key, value in {**TINY, **changes}.items():
        *path, last = key.split(".")
        section = config
        for p in path:
            section = section[p]
        section[last] = value
    return {(c["score"], c["variant"], c["sampler"], c["budget"])
            for c in cells_of(quick_config(config))}


def test_compare_fills_every_cell_once_and_only_new_ones_later(tmp_path):
    out = run_compare(tmp_path)
    expected = expected_cells()
    got = {(c["score"], c["variant"], c["sampler"], c["budget"]) for c in out["cells"]}
    assert got == expected and len(out["cells"]) == len(expected)
    # ald applies to VE only; the exact score runs once per continuous SDE (vp here)
    assert ("learned", "vp", "ald", 22) not in got and ("learned", "ncsn", "ald", 22) in got
    assert {c[1] for c in got if c[0] == "exact"} == {"vp"}
    for cell in out["cells"]:
        assert cell["finite"] and math.isfinite(cell["sliced_w2"]) and cell["nfe"] > 0
        assert 0 <= cell["weight_error"] < 1
    for variant in TINY["compare.run_variants"]:
        facts = out["runs"][f"{variant}_seed0"]
        assert facts["nll_gap_nats"] == pytest.approx(facts["nll_nats"] - facts["exact_nll_nats"])
        assert math.isfinite(facts["nll_gap_nats"]) and len(facts["score_error"]) == 5
    for name in ("results.md", "loss_curves.png", "quality_vs_nfe.png", "likelihood.png",
                 "samples.png"):
        assert (tmp_path / name).is_file(), name
    table = (tmp_path / "results.md").read_text()
    assert "| learned | ancestral | 22 |" in table and "| ddpm |" in table

    saved = (tmp_path / "results.json").read_text()
    run_compare(tmp_path)  # nothing new: the file is not even rewritten
    assert (tmp_path / "results.json").read_text() == saved

    more = run_compare(tmp_path, **{"compare.quick.budgets": (22, 30)})
    got = {(c["score"], c["variant"], c["sampler"], c["budget"]) for c in more["cells"]}
    assert got == expected_cells(**{"compare.quick.budgets": (22, 30)})
    # the old cells are kept as they were (a recomputed cell would have a new wall time)
    old = {json.dumps(c, sort_keys=True) for c in json.loads(saved)["cells"]}
    assert old <= {json.dumps(c, sort_keys=True) for c in more["cells"]}


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c.compare, "samplers", ("pc", "warp")), "'warp' is not one of"),
    (lambda c: setattr(c.compare, "run_variants", ("vp", "edm")), "'edm' is not one of"),
    (lambda c: setattr(c.compare, "budgets", (2,)), "compare.budgets must be integers >= 3"),
    (lambda c: setattr(c.data, "name", "moons"), "compare.exact_score needs data.name"),
])
def test_bad_compare_configs_are_refused_before_training(change, message):
    config = compare_mixture.get_config()
    change(config)
    with pytest.raises(ConfigError, match=message):
        check_compare(config)


def test_weight_error_sees_a_missing_component_and_not_exact_draws(mixture):
    """Exact draws: |share - w| within 4 standard deviations sqrt(w (1 - w) / n); every point
    in the heavier component: the lighter one's whole weight (0.3)."""
    import jax
    import jax.numpy as jnp
    n = 20000
    draws = mixture.sample(jax.random.key(0), n)
    assert _weight_error(draws) < 4 * math.sqrt(0.3 * 0.7 / n)
    heavy = jnp.broadcast_to(mixture.means[1], (n, 2))
    assert _weight_error(heavy) == pytest.approx(float(mixture.weights[0]), abs=1e-4)
