"""The SGD-vs-SDE double-well experiment's table, from the committed numbers of its
default run (docs/figures/sgd_vs_sde.json; no simulation): every line ≤ 100 characters,
the fitted orders that docs/sde.md quotes, and '—' where replicas diverged."""

import json
from pathlib import Path

import numpy as np

from sgdsde.experiments import sgd_vs_sde

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "figures" / "sgd_vs_sde.json"


def _arrays(value):
    """The JSON's lists back as float arrays where they are numeric (as the run returns them)."""
    if isinstance(value, dict):
        return {key: _arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        try:
            return np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return [_arrays(item) for item in value]
    return value


def test_table_of_the_default_run_is_narrow_and_quotes_the_fits():
    table = sgd_vs_sde.format_table(_arrays(json.loads(RESULTS.read_text())))
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "order in η of SGD − SDE (loss): 1.04 ± 0.08" in table  # docs/sde.md, part (i)
    assert "order in η of SGD − SDE (loss): 2.45 ± 0.16" in table  # part (ii)
    assert table.count("P(lower) SGD") == 2 and "—" in table
