"""Three Factors (f) ``three-factors-breaking-point``: the quick run end to end (JSON +
PNG, verdict, table width), the sign of the effect at the quick size (the higher noise
level drops more at β = 8), the breaking-point rule by hand, and resuming after a
configuration file is deleted."""

import json
import math
import os

import numpy as np
import pytest

from sgdsde.experiments import reproduce
from sgdsde.experiments.reproduce import three_factors_breaking as brk

VERDICT_FIELDS = {"claim", "statistic", "value", "interval", "p_value", "verdict", "text"}
VERDICTS = {reproduce.CONFIRMED, reproduce.NOT_CONFIRMED, reproduce.CONTRADICTED}


def _reproduce(out):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reproduce, "experiments", lambda: {e.name: e for e in brk.EXPERIMENTS})
        return reproduce.reproduce("f", quick=True, out=out, seed=0, progress=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("three-factors-f")
    return out, _reproduce(out)


def test_quick_run_writes_json_png_verdict_and_shows_the_sign(quick):
    out, results = quick
    stem = "three_factors_breaking_point"
    assert (out / f"{stem}.png").stat().st_size > 10_000
    saved = json.loads((out / f"{stem}.json").read_text())
    assert saved["experiment"]["name"] == brk.NAME and saved["experiment"]["label"] == "f"
    (v,) = saved["verdicts"]
    assert set(v) == VERDICT_FIELDS and v["verdict"] in VERDICTS and v["statistic"] == "difference"
    high, low = saved["levels"]
    assert high["eta"] == 2 * low["eta"] and high["betas"] == low["betas"] == list(brk.SIZES["quick"]["betas"])
    assert high["drop"][0] == 0 and low["drop"][0] == 0  # β = 1 against itself
    # the sign at the quick size: at β = 8 the higher noise level loses more test accuracy,
    # by more than twice the paired standard error
    se = (v["interval"][1] - v["value"]) / 2  # the interval is value ± 2 se
    assert v["value"] > 2 * se
    assert high["drop"][-1] > low["drop"][-1]
    assert max(len(line) for line in brk.table(results).splitlines()) <= 100


def test_breaking_beta_rule_by_hand():
    betas = [1, 2, 4, 8]
    # drop − 2 se > 0.02: β = 2 has 0.03 − 0.02 = 0.01 (no), β = 4 has 0.10 − 0.04 = 0.06 (yes)
    assert brk.breaking_beta(betas, [0.0, 0.03, 0.10, 0.5], [0.0, 0.01, 0.02, 0.01]) == 4
    assert brk.breaking_beta(betas, [0.0, 0.01, 0.02, 0.03], [0.0, 0.01, 0.01, 0.01]) is None
    assert brk.breaking_beta(betas, [0.0, math.nan, 0.5, 0.5], [0.0, 0.01, 0.01, 0.01]) == 4


def test_resumes_after_a_configuration_file_is_deleted(quick):
    out, results = quick
    configs = reproduce.sweep_folder(out, brk.NAME, "beta8") / "configs"
    files = sorted(os.listdir(configs))
    os.remove(configs / files[0])
    again = _reproduce(out)
    assert sorted(os.listdir(configs)) == files
    for a, b in zip(results["levels"], again["levels"]):
        np.testing.assert_array_equal(np.asarray(a["per_replica"]), np.asarray(b["per_replica"]))
