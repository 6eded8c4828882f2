"""The README's API snippets run as they stand, and the numbers they state hold."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def api_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The API"):text.index("### SDEs")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_api_snippets_run_and_the_stated_agreement_holds():
    snippets = api_snippets()
    assert len(snippets) == 3
    scope = {}
    exec(compile(snippets[0], "README.md", "exec"), scope)
    # "agrees to about 0.02 nats": the likelihood of the first snippet's samples.
    gap = abs(scope["logp"] - scope["exact"])
    assert float(gap.mean()) < 0.02
    exec(compile(snippets[1], "README.md", "exec"), scope)
    # "agrees to about 1e-5"; inpainting keeps the observed coordinate; the guided draws come
    # from the lighter component (mean -2 in the first coordinate)
    assert float(abs(scope["mean"] - scope["truth"]).max()) < 3e-5
    assert bool((scope["filled"][:, 0] == scope["x0"][:, 0]).all())
    assert int(scope["nfe"]) == 1001 and float(scope["x"][:, 0].mean()) < -1.9
    exec(compile(snippets[2], "README.md", "exec"), scope)
    assert scope["x"].shape == (4, 8, 8, 1)


def test_the_stacked_sde_snippet_runs_one_sweep():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### SDEs"):text.index("### Losses")]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, re.S)
    scope = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    x = scope["x"]
    assert x.shape == (3, 256, 2) and scope["nfe"].tolist() == [10, 10, 10]
    assert float(abs(x[0] - x[2]).mean()) > 1e-2  # each beta_max gives its own samples


def test_the_score_sde_snippet_runs():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using score_sde checkpoints"):text.index("## Comparing SDEs")]
    # The first runs here; the second (the FID recipe) needs a published checkpoint and a GPU.
    snippet, _recipe = re.findall(r"```python\n(.*?)```", section, re.S)
    scope = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["x"].shape == (4, 8, 8, 1) and int(scope["nfe"]) == 10
