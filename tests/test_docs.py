"""Every Python snippet in the README and docs/*.md runs.

Project rule: a snippet a reader cannot run is a bug. For each Markdown file, its
```python fenced blocks are executed in order in one fresh namespace (as a reader would
paste them into one notebook), with the working directory a temporary folder (files the
snippets write land there) and matplotlib on the Agg backend. One test per file; a
failure names the file and the index of the block that failed.

There is no skip list and no expected failure: every snippet must run.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)


def python_blocks(path: pathlib.Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file, as (line of the fence, source)."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(ROOT).as_posix() for p in FILES])
def test_snippets_run(path, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    name = path.relative_to(ROOT).as_posix()
    namespace = {"__name__": "__main__"}
    try:
        for index, (line, source) in enumerate(python_blocks(path)):
            label = f"{name}[{index}] (line {line})"
            try:
                exec(compile(source, label, "exec"), namespace)
            except Exception as error:  # name the file and the block, keep the traceback
                raise AssertionError(f"{label}: {type(error).__name__}: {error}") from error
    finally:
        plt.close("all")


def test_extractor_finds_blocks():
    """Guards against a fence pattern that silently matches nothing (every test would pass)."""
    assert python_blocks(ROOT / "README.md"), "README.md has no ```python block"
