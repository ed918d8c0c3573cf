"""One quick He–Liu–Tao reproduction through the command line, shared by
test_reproduce_registry.py and test_reproduce_he_liu_tao.py (the run is the costly part
of both: one run per test session)."""

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from sgdsde import cli


@functools.lru_cache(maxsize=None)
def quick_cli_run() -> tuple[int, Path]:
    """``sgdsde reproduce he-liu-tao --quick --quiet --out DIR --seed 0``: (exit status, DIR).
    DIR is removed when the interpreter exits."""
    out = Path(tempfile.mkdtemp(prefix="sgdsde-he-liu-tao-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    status = cli.main(["reproduce", "he-liu-tao", "--quick", "--quiet", "--out", str(out), "--seed", "0"])
    return status, out
