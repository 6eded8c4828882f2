"""The manual (README.md, CHANGELOG.md, docs/*.md): its code snippets run as they stand and the
numbers they state hold; every relative link and image resolves, anchors included; nothing
links outside the repository; the README stays short; the version is one number."""
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
SNIPPET = re.compile(r"```python\n(.*?)```", re.S)


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of each ATX heading outside code blocks."""
    return [(len(m.group(1)), m.group(2).strip())
            for m in re.finditer(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$", prose(text), re.M)]


def section(path: pathlib.Path, title: str) -> str:
    """The text under the heading `title` up to the next heading of its level or above."""
    lines, level, out, fenced = path.read_text().split("\n"), None, [], False
    for line in lines:
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#{1,6}) (.*?)[ \t]*$", line)
        if level is None:
            if heading and heading.group(2) == title:
                level = len(heading.group(1))
        elif heading and len(heading.group(1)) <= level:
            break
        else:
            out.append(line)
    assert level is not None, f"{path.name} has no heading {title!r}"
    return "\n".join(out)


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation other than '-' and '_' dropped,
    spaces to '-'."""
    title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link's text only
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in headings(path.read_text()):
        base = slug(title)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(text: str) -> list[str]:
    """Targets of markdown links and images outside code blocks and code spans."""
    text = re.sub(r"`[^`\n]*`", "", prose(text))
    return [m.group(1) for m in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)",
                                            text)]


# ---- the snippets run, and the numbers they state hold ----

def test_api_snippets_run_and_the_stated_agreement_holds():
    snippets = SNIPPET.findall(section(ROOT / "README.md", "The API"))
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
    (snippet,) = SNIPPET.findall(section(ROOT / "docs" / "samplers.md", "SDEs (`sde/`)"))
    scope = {}
    exec(compile(snippet, "docs/samplers.md", "exec"), scope)
    x = scope["x"]
    assert x.shape == (3, 256, 2) and scope["nfe"].tolist() == [10, 10, 10]
    assert float(abs(x[0] - x[2]).mean()) > 1e-2  # each beta_max gives its own samples


def test_the_score_sde_snippet_runs():
    # The first runs here; the second (the FID recipe) needs a published checkpoint and a GPU.
    snippet, _recipe = SNIPPET.findall((ROOT / "docs" / "score_sde.md").read_text())
    scope = {}
    exec(compile(snippet, "docs/score_sde.md", "exec"), scope)
    assert scope["x"].shape == (4, 8, 8, 1) and int(scope["nfe"]) == 10


# ---- links, length, version ----

def test_helpers_follow_githubs_rules():
    assert slug("SDEs (`sde/`)") == "sdes-sde"
    assert slug("Our samplers against score_sde's, on an imported model") == \
        "our-samplers-against-score_sdes-on-an-imported-model"
    assert slug("Fourier-undersampled digits (MRI-style)") == "fourier-undersampled-digits-mri-style"
    assert links("[a](b.md#c) ![d](e/f.png) `[g](h.md)`\n```\n[i](j.md)\n```\n") == \
        ["b.md#c", "e/f.png"]


def test_pages_link_nothing_outside_the_repository():
    for page in PAGES:
        text = page.read_text()
        found = re.findall(r"(?:https?://|mailto:)\S*", text, re.I)
        assert not found, f"{page.relative_to(ROOT)} links outside the repository: {found}"


def test_every_relative_link_resolves():
    checked = 0
    for page in PAGES:
        for target in links(page.read_text()):
            where = f"{page.relative_to(ROOT)}: ({target})"
            assert not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I), where
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.is_file(), f"{where}: no file {path}"
            assert ROOT in file.parents, f"{where}: outside the repository"
            if anchor:
                assert file.suffix == ".md", f"{where}: an anchor into a non-markdown file"
                assert anchor in anchors(file), f"{where}: no heading #{anchor} in {path}"
            checked += 1
    assert checked > 50  # the pages do link to each other


def test_every_docs_page_is_in_the_readme_map():
    readme = links(section(ROOT / "README.md", "Documentation"))
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, page.name
    assert "CHANGELOG.md" in readme


def test_readme_is_at_most_300_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_the_version_is_the_changelogs_newest():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    release = re.match(r"\d+\.\d+\.\d+", version).group(0)
    first = next(title for level, title in headings((ROOT / "CHANGELOG.md").read_text())
                 if level == 2)
    assert first.split()[0] == release, (version, first)
    # a development version is marked as such in both places
    assert (".dev" in version) == ("in development" in first), (version, first)
