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
    assert len(snippets) == 2
    scope = {}
    for code in snippets:
        exec(compile(code, "README.md", "exec"), scope)
    # "agrees to about 0.02 nats": the likelihood of the first snippet's samples.
    gap = abs(scope["logp"] - scope["exact"])
    assert float(gap.mean()) < 0.02 and scope["x"].shape == (4, 8, 8, 1)
