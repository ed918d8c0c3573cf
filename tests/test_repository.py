"""The repository stands on its own: a clone has no reference folder beside it, so no file
may point at one; every formula is in docs/theory.md."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_text_files():
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    suffixes = {".py", ".md", ".toml", ".txt", ".cfg", ".sh", ".json", ""}
    return [ROOT / name for name in listed.split() if Path(name).suffix in suffixes and (ROOT / name).is_file()]


def test_nothing_points_outside_the_repository():
    outside = "../" + "shared"  # split so that this file does not match itself
    reference = "THEORY" + ".md"
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _tracked_text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if outside in line or reference in line
    ]
    assert not offenders, f"files cite a reference outside the repository: {offenders}"
    theory = (ROOT / "docs" / "theory.md").read_text()
    for section in range(1, 9):  # the sections the code's docstrings cite as "docs/theory.md §k"
        assert f"§{section}." in theory, f"docs/theory.md has no §{section}"
