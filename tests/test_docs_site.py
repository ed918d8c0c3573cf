"""The documentation site builds, and its API reference lists every public name.

`mkdocs build --strict` (mkdocs.yml) fails on a broken link or anchor between pages, a
page left out of the nav and a docstring mkdocstrings cannot render. The API pages are
`::: sgdsde.<module>` blocks, which render the names in each module's ``__all__``; the
second test reads the built HTML and checks that every name in ``sgdsde.__all__`` and
in each public module's ``__all__`` (recursively, for public submodules such as
``sgdsde.nn.data``) has an entry there, so a new public function cannot be left out.

The build takes about 5 s (2 CPU cores). mkdocs is in the ``test`` extra; without it
these tests are skipped, saying so.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import subprocess
import sys
import types

import pytest

import sgdsde

ROOT = pathlib.Path(__file__).resolve().parent.parent

for _needed in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
    pytest.importorskip(_needed, reason=f"{_needed} is not installed: pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    """The site built with ``mkdocs build --strict`` into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    if done.returncode != 0:
        problems = [line for line in done.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
        pytest.fail("mkdocs build --strict failed:\n" + "\n".join(problems or done.stderr.splitlines()[-30:]))
    return out


def test_site_builds_strict(site):
    assert (site / "index.html").is_file()
    assert (site / "getting_started" / "index.html").is_file()
    assert (site / "api" / "sgdsde" / "index.html").is_file()


def public_modules() -> list[types.ModuleType]:
    """sgdsde, the modules named in its ``__all__`` and its lazily loaded ones, and
    recursively every submodule a public module names in its ``__all__``."""
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
    return [found[name] for name in sorted(found)]


def documented_paths(obj, module: types.ModuleType, name: str) -> set[str]:
    """The anchors under which ``module.name`` may be documented: its public path, or
    where it is defined (``sgdsde.fokker_planck.grid``, the function, is shadowed by the
    submodule of the same name for the static reader, so it is documented where it is
    defined, ``sgdsde.fokker_planck.grid.grid``)."""
    paths = {f"{module.__name__}.{name}" if module is not sgdsde else f"sgdsde.{name}"}
    if isinstance(obj, types.ModuleType):
        paths.add(obj.__name__)
    elif getattr(obj, "__module__", None) and getattr(obj, "__qualname__", None):
        paths.add(f"{obj.__module__}.{obj.__qualname__}")
    return paths


def test_api_reference_lists_every_public_name(site):
    anchors: set[str] = set()
    for page in (site / "api").rglob("*.html"):
        anchors |= set(re.findall(r'id="(sgdsde[\w.]*)"', page.read_text(encoding="utf-8")))
    assert "sgdsde.run" in anchors and "sgdsde.observers.moments" in anchors  # the anchors are found at all
    modules = public_modules()
    assert {"sgdsde.sharding", "sgdsde.nn.data", "sgdsde.fokker_planck"} <= {m.__name__ for m in modules}
    missing = []
    for module in modules:
        assert getattr(module, "__all__", None), f"{module.__name__} has no __all__"
        if module.__name__ not in anchors:
            missing.append(f"{module.__name__} (the module)")
        for name in module.__all__:
            paths = documented_paths(getattr(module, name), module, name)
            if not paths & anchors:
                missing.append(" or ".join(sorted(paths)))
    assert not missing, "not in the API reference (docs/api/): " + ", ".join(missing)
