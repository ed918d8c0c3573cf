"""The command line and the demo experiment: files written, numbers consistent with theory."""

import json

import numpy as np
import pytest

import sgdsde as sd
from sgdsde import cli


def test_demo_writes_table_figure_and_json(tmp_path, capsys):
    code = cli.main(["demo", "--out", str(tmp_path), "--learning-rates", "0.1", "--batch-sizes", "8",
                     "--replicas", "200"])
    assert code == 0
    assert (tmp_path / "covariance.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "covariance.json").read_text())
    (row,) = results["rows"]
    assert results["clock"] == "SGD steps" and row["learning_rate"] == 0.1 and row["batch_size"] == 8
    # the stored exact value is the theory module's, and the ensemble agrees with it
    # within 4 Monte-Carlo standard errors entry by entry (200 independent replicas)
    exact = np.asarray(sd.theory.sgd_stationary_cov(np.asarray(results["hessian"]), np.asarray(results["noise_cov"]),
                                                    0.1, 8, sampling="subset", num_examples=results["num_examples"]))
    np.testing.assert_allclose(row["cov_exact_discrete"], exact, rtol=1e-5)
    assert row["max_z_sgd_vs_exact"] < 4.0
    assert row["rel_gap_sde_vs_exact"] > 0.03  # the SDE misses the O(ηλ) correction at ηλ_max = 0.4
    out = capsys.readouterr().out
    assert "eta" in out and "covariance.png" in out


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    code = cli.main(["demo", "--out", str(tmp_path), "--learning-rates", "-0.1", "--replicas", "10"])
    assert code == 2
    assert "learning_rate" in capsys.readouterr().err


def test_unknown_command_exits():
    with pytest.raises(SystemExit):
        cli.main(["bogus"])
