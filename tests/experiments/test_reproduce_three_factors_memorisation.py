"""Three Factors (e) ``three-factors-memorisation``: the quick run end to end (JSON +
PNG, verdict fields, table width), the grid (momentum with its own learning rates), and
the test accuracy at equal memorisation against hand-computed values, and resuming
after a configuration file is deleted."""

import json
import math
import os

import numpy as np
import pytest

from sgdsde.experiments import reproduce
from sgdsde.experiments.reproduce import three_factors_memorisation as mem

VERDICT_FIELDS = {"claim", "statistic", "value", "interval", "p_value", "verdict", "text"}
VERDICTS = {reproduce.CONFIRMED, reproduce.NOT_CONFIRMED, reproduce.CONTRADICTED}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("three-factors-e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reproduce, "experiments", lambda: {e.name: e for e in mem.EXPERIMENTS})
        results = reproduce.reproduce("e", quick=True, out=out, seed=0, progress=False)
    return out, results


def test_quick_run_writes_json_png_and_verdicts(quick):
    out, results = quick
    stem = "three_factors_memorisation"
    assert (out / f"{stem}.png").stat().st_size > 10_000
    saved = json.loads((out / f"{stem}.json").read_text())
    assert saved["experiment"]["name"] == mem.NAME and saved["experiment"]["label"] == "e"
    size = mem.SIZES["quick"]
    assert len(saved["verdicts"]) == len(size["rates"])  # one per momentum
    for v in saved["verdicts"]:
        assert set(v) == VERDICT_FIELDS and v["verdict"] in VERDICTS and v["statistic"] == "spearman"
        assert math.isnan(v["value"]) or -1 <= v["value"] <= 1
    runs = saved["runs"]
    assert len(runs) == len(size["fractions"]) * sum(len(r) for r in size["rates"].values()) * len(size["batch_sizes"])
    for r in runs:
        assert 0 <= min(r["memorised"]) and max(r["memorised"]) <= 1 and len(r["test"]) == len(r["steps"])
        # memorisation starts near chance (1/K at initialisation) and the runs do memorise
    assert max(r["memorised"][-1] for r in runs) > 0.5
    assert max(len(line) for line in mem.table(results).splitlines()) <= 100


def test_grid_pairs_each_momentum_with_its_learning_rates():
    hyper, configs = mem.grid(mem.SIZES["default"])
    assert hyper.grid_shape == (len(configs),)
    for beta, rates in mem.SIZES["default"]["rates"].items():
        mine = [c for c in configs if c["momentum"] == beta]
        assert sorted({c["learning_rate"] for c in mine}) == sorted(rates)
        assert len(mine) == len(rates) * len(mem.SIZES["default"]["batch_sizes"])


def test_accuracy_at_memorisation_by_hand():
    # M̄ falls from chance to its minimum (record 2), then rises; A at the crossing of 0.3 is
    # interpolated between records 3 (M 0.2, A 0.9) and 4 (M 0.4, A 0.7): 0.8; the band
    # ±0.05 around 0.3 holds no record, so A(0.3) = 0.8
    memorised = [0.1, 0.05, 0.0, 0.2, 0.4, 0.6]
    accuracy = [0.1, 0.5, 0.95, 0.9, 0.7, 0.6]
    assert mem.accuracy_at_memorisation(memorised, accuracy, 0.3) == pytest.approx(0.8, abs=1e-12)
    # the level 0.1 is above chance's start but counted after the minimum only: between
    # records 2 (0.0, 0.95) and 3 (0.2, 0.9) → 0.925; no record within ±0.05 of 0.1 after it
    assert mem.accuracy_at_memorisation(memorised, accuracy, 0.1) == pytest.approx(0.925, abs=1e-12)
    # level 0.4 hits record 4 exactly: crossing 0.7, and the band holds record 4 too: 0.7
    assert mem.accuracy_at_memorisation(memorised, accuracy, 0.4) == pytest.approx(0.7, abs=1e-12)
    assert math.isnan(mem.accuracy_at_memorisation(memorised, accuracy, 0.7))


def test_resumes_after_a_configuration_file_is_deleted(quick):
    out, results = quick
    configs = reproduce.sweep_folder(out, mem.NAME, "labels50") / "configs"
    files = sorted(os.listdir(configs))
    os.remove(configs / files[2])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reproduce, "experiments", lambda: {e.name: e for e in mem.EXPERIMENTS})
        again = reproduce.reproduce("e", quick=True, out=out, seed=0, progress=False)
    assert sorted(os.listdir(configs)) == files
    for a, b in zip(results["runs"], again["runs"]):
        np.testing.assert_array_equal(a["memorised"], b["memorised"])
        np.testing.assert_array_equal(a["test"], b["test"])
