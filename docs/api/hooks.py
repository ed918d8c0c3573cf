"""mkdocs hook: the API reference, one generated page per public module.

The public modules are ``sgdsde``, the modules named in ``sgdsde.__all__``, the lazily
loaded ones (``sgdsde.sharding``, …) and, recursively, every submodule a public module
names in its ``__all__`` (``sgdsde.nn.data``). Each gets a page ``api/<module>.md``
holding ``::: <module>``: mkdocstrings renders the names in the module's ``__all__``.
A new public module or function is therefore in the reference without editing the docs
(tests/test_docs_site.py checks that every public name has an entry).

One static reader's blind spot is handled here: a name exported from a submodule of the
same name (``sgdsde.fokker_planck.grid``, the function, from ``fokker_planck/grid.py``)
is the function at run time, but griffe sees the submodule and leaves it out; the page
renders it from where it is defined (``::: sgdsde.fokker_planck.grid.grid``).

Two more adjustments for the topic pages: a page in docs/ that the nav does not name is
appended to its Topics section, and lists nested by 2 spaces (as GitHub reads them) get
the 4 spaces Python-Markdown needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import re
import types

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

LIST_ITEM = re.compile(r"^([-*+]|\d+\.) ")
FENCE = re.compile(r"^\s*(```|~~~)")
NAV_TITLE = "API reference"
OVERVIEW = "api/index.md"
TOPICS = "Topics"


def public_modules() -> list[types.ModuleType]:
    """The public modules of sgdsde (module docstring), sgdsde first, then by name."""
    import sgdsde

    found: dict[str, types.ModuleType] = {}
    pending = [sgdsde, *(importlib.import_module(f"sgdsde.{name}") for name in sorted(sgdsde._LAZY))]
    while pending:
        module = pending.pop()
        if module.__name__ in found:
            continue
        found[module.__name__] = module
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if isinstance(value, types.ModuleType) and value.__name__.startswith("sgdsde."):
                pending.append(value)
    return [found[name] for name in sorted(found, key=lambda name: (name != "sgdsde", name))]


def shadowed_names(module: types.ModuleType) -> list[str]:
    """Defining paths of the non-module names in ``__all__`` that share their name with a
    submodule."""
    if not hasattr(module, "__path__"):  # a plain module has no submodules
        return []
    paths = []
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name)
        if not isinstance(value, types.ModuleType) and importlib.util.find_spec(f"{module.__name__}.{name}"):
            paths.append(f"{value.__module__}.{value.__qualname__}")
    return paths


def page_uri(module: types.ModuleType) -> str:
    return f"api/{module.__name__}.md"


def page_markdown(module: types.ModuleType) -> str:
    """The page: ``::: module`` (its docstring, then its ``__all__``), then the shadowed names."""
    text = f"# `{module.__name__}`\n\n::: {module.__name__}\n    options:\n      show_root_heading: false\n"
    for path in shadowed_names(module):
        name = path.rsplit(".", 1)[-1]
        text += (f"\n`{module.__name__}.{name}` is the object below (its submodule `{name}` defines it "
                 f"under the same name):\n\n::: {path}\n")
    return text


def nav_paths(entry: str | dict | list) -> set[str]:
    """Every page path named in a nav entry (a path, a {title: entry} or a list)."""
    if isinstance(entry, str):
        return {entry}
    items = entry.values() if isinstance(entry, dict) else entry
    return set().union(*(nav_paths(item) for item in items))


def on_config(config: MkDocsConfig, **kwargs) -> MkDocsConfig:
    """Replace the nav's ``API reference: api/index.md`` entry by a section: the overview,
    then one page per public module. A page in the docs folder (not a subfolder) that the
    nav does not name is appended to its Topics section, titled by its first heading."""
    pages = [{"Overview": OVERVIEW}, *({m.__name__: page_uri(m)} for m in public_modules())]
    named = nav_paths(config.nav or [])
    for index, entry in enumerate(config.nav or []):
        if isinstance(entry, dict) and entry.get(NAV_TITLE) == OVERVIEW:
            config.nav[index] = {NAV_TITLE: pages}
        elif isinstance(entry, dict) and isinstance(entry.get(TOPICS), list):
            docs = pathlib.Path(config.docs_dir)
            entry[TOPICS] += sorted(p.name for p in docs.glob("*.md") if p.name not in named)
    return config


def on_files(files: Files, config: MkDocsConfig, **kwargs) -> Files:
    """Add the generated pages (a static file of the same name takes precedence)."""
    for module in public_modules():
        if files.get_file_from_path(page_uri(module)) is None:
            files.append(File.generated(config, page_uri(module), content=page_markdown(module)))
    return files


def nested_lists_for_python_markdown(markdown: str) -> str:
    """Indentation inside a list doubled: the pages nest lists by 2 spaces, as GitHub
    reads them; Python-Markdown (mkdocs) needs 4, else a nested item is read as text of
    its parent. Fenced code is left as it is."""
    out, in_list, in_fence = [], False, False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
            in_list = in_list and line.startswith(" ")  # a fence at the margin ends the list
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if not in_fence and not FENCE.match(line):
            if indent == 0 and stripped:
                in_list = bool(LIST_ITEM.match(stripped))
            elif in_list and indent:
                line = " " * (2 * indent) + stripped
        out.append(line)
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Page, **kwargs) -> str:
    """The topic pages' nested lists made readable by Python-Markdown (above)."""
    if page.file.src_uri.startswith("api/"):
        return markdown
    return nested_lists_for_python_markdown(markdown)
