"""The command line and the demo experiment: files written, numbers consistent with theory."""

import json
import tempfile

import numpy as np
import pytest

import sgdsde as sd
from sgdsde import cli


def test_demo_writes_table_figure_and_json(tmp_path, capsys):
    code = cli.main(["demo", "--out", str(tmp_path), "--learning-rates", "0.1", "--batch-sizes", "8",
                     "--replicas", "200", "--sample-steps", "600", "--quiet"])
    assert code == 0
    assert (tmp_path / "covariance.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "covariance.json").read_text())
    (row,) = results["rows"]
    assert results["clock"] == "SGD steps" and row["learning_rate"] == 0.1 and row["batch_size"] == 8
    # burn-in: 8 relaxation times 1/(η λ_min) = 8/(0.1 · 0.5) SGD steps
    assert results["replicas"] == 200 and results["sample_steps"] == 600 and results["burn_in_steps"] == 160
    # the stored exact value is the theory module's, and the ensemble agrees with it
    # within 4 Monte-Carlo standard errors entry by entry (200 independent replicas)
    exact = np.asarray(sd.theory.sgd_stationary_cov(np.asarray(results["hessian"]), np.asarray(results["noise_cov"]),
                                                    0.1, 8, sampling="subset", num_examples=results["num_examples"]))
    np.testing.assert_allclose(row["cov_exact_discrete"], exact, rtol=1e-5)
    assert row["max_z_sgd_vs_exact"] < 4.0
    assert row["rel_gap_sde_vs_exact"] > 0.03  # the SDE misses the O(ηλ) correction at ηλ_max = 0.4
    out = capsys.readouterr().out
    assert "eta" in out and "covariance.png" in out and "sgdsde.run" not in out  # --quiet: no progress lines
    assert max(len(line) for line in out.splitlines() if not line.startswith("wrote ")) <= 100  # paths aside


def test_demo_defaults_and_progress(monkeypatch, tmp_path, capsys):
    """The defaults the command line passes (the documented ~15 s run), and progress shown
    unless --quiet; the computation itself is replaced (checked above)."""
    from sgdsde.experiments import ou_covariance

    seen = {}
    monkeypatch.setattr(ou_covariance, "stationary_covariance", lambda **kwargs: seen.update(kwargs) or dict(CANNED))
    monkeypatch.setattr(ou_covariance, "plot", lambda results: _empty_figure())
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    assert seen == {"learning_rates": [0.025, 0.05, 0.1, 0.2, 0.4], "batch_sizes": [8, 32], "sampling": "subset",
                    "replicas": 1000, "sample_steps": 1500, "seed": 0, "progress": True}
    assert cli.main(["demo", "--out", str(tmp_path), "--quiet", "--sample-steps", "50"]) == 0
    assert seen["progress"] is False and seen["sample_steps"] == 50


def _empty_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure()


def _one_line_error(capsys, prefix: str) -> str:
    """The run's stderr: exactly one line, starting with ``prefix``, no traceback."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(prefix) and "Traceback" not in err, err
    return err


@pytest.fixture
def no_work(monkeypatch):
    """Every experiment fails the test if it is started."""
    from sgdsde.experiments import minima, ou_covariance

    for module, name in ((minima, "minima_selection"), (ou_covariance, "stationary_covariance")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("the experiment ran"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["minima", "--replica", "10"], "sgdsde minima: error: unrecognized arguments: --replica 10"),
        (["demo", "--learning-rate", "0.1"], "sgdsde demo: error: unrecognized arguments: --learning-rate 0.1"),
        (["minima", "--out-dir", "x"], "sgdsde minima: error: unrecognized arguments: --out-dir x"),
    ],
)
def test_abbreviated_options_are_rejected(argv, message, no_work, capsys):
    assert cli.main(argv) == 2
    assert _one_line_error(capsys, message)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["minima", "--replicas", "0"], "--replicas: must be an integer ≥ 2, got 0"),
        (["minima", "--replicas", "1.5"], "--replicas: must be an integer ≥ 2, got 1.5"),
        (["minima", "--escape-replicas", "1"], "--escape-replicas: must be an integer ≥ 2, got 1"),
        (["minima", "--batch-sizes", "2", "0"], "--batch-sizes: must be a positive integer, got 0"),
        (["minima", "--noise", "0.004", "0.012", "--points", "0"], "--points: must be a positive integer, got 0"),
        (["minima", "--points", "3"], "--points: sets the number of noise levels of --noise; give --noise too"),
        (["minima", "--noise", "0.012", "0.004"], "--noise: N_MIN must be smaller than N_MAX, got 0.012 0.004"),
        (["minima", "--noise", "0.004", "0.004"], "--noise: N_MIN must be smaller than N_MAX, got 0.004 0.004"),
        (["minima", "--noise", "-1", "0.004"], "--noise: must be a finite number > 0, got -1"),
        (["minima", "--noise", "0.004", "0.012", "--batch-sizes", "2"],
         "--noise: give either --noise or --batch-sizes, not both"),
        (["minima", "--learning-rate", "inf"], "--learning-rate: must be a finite number > 0, got inf"),
        (["minima", "--seed", "-1"], "--seed: must be a non-negative integer, got -1"),
        (["demo", "--replicas", "0"], "--replicas: must be an integer ≥ 2, got 0"),
        (["demo", "--batch-sizes", "8", "-3"], "--batch-sizes: must be a positive integer, got -3"),
        (["demo", "--learning-rates", "-0.1"], "--learning-rates: must be a finite number > 0, got -0.1"),
        (["demo", "--sampling", "random"], "sampling: invalid choice"),
        (["demo", "--sample-steps", "0"], "--sample-steps: must be a positive integer, got 0"),
        # checked by the library (before any work), reported under the option's name
        (["minima", "--noise", "0.5", "1"], "--noise: n_max = 1.0 > η = 0.025 needs a batch size < 1"),
        (["minima", "--landscape", "no-such-landscape"], "--landscape: 'no-such-landscape' is neither"),
    ],
)
def test_bad_values_are_one_line_naming_the_option(argv, message, no_work, tmp_path, capsys):
    command = argv[0]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in _one_line_error(capsys, f"sgdsde {command}: error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--em-dt", "2"], "--em-dt: the Euler–Maruyama step must be in (0, 1] SGD steps, got 2.0"),
        (["--batch-sizes", "2", "1000"], "--batch-sizes: need integers in [1, N − 1 = 999], got [2, 1000]"),
    ],
)
def test_library_value_errors_are_one_line_naming_the_option(argv, message, tmp_path, capsys, monkeypatch):
    """The library's own checks (run before any computation) come back as one line under
    the option's name, not as a traceback."""
    from sgdsde.experiments import minima

    monkeypatch.setattr(minima, "build_problem", lambda *a, **k: pytest.fail("work started"))
    assert cli.main(["minima", *argv, "--out", str(tmp_path)]) == 2
    assert message in _one_line_error(capsys, "sgdsde minima: error: ")


def test_bad_landscape_file_is_named(tmp_path, no_work, capsys):
    bad = tmp_path / "land.json"
    bad.write_text("{not json")
    assert cli.main(["minima", "--landscape", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert f"--landscape: cannot read {bad} as JSON" in _one_line_error(capsys, "sgdsde minima: error: ")


def test_out_is_checked_before_any_work(tmp_path, no_work, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for command in ("minima", "demo"):
        assert cli.main([command, "--out", str(a_file)]) == 2
        assert f"--out: '{a_file}' exists and is not a folder" in _one_line_error(capsys, f"sgdsde {command}: error")
        assert cli.main([command, "--out", str(a_file / "deeper" / "out")]) == 2
        assert "is a file, not a folder" in _one_line_error(capsys, f"sgdsde {command}: error: --out: cannot create")
    (tmp_path / "taken" / "minima.json").mkdir(parents=True)  # the JSON could not be written there
    assert cli.main(["minima", "--out", str(tmp_path / "taken")]) == 2
    assert "minima.json' is a folder" in _one_line_error(capsys, "sgdsde minima: error: --out: ")
    # a folder the process may not write in (simulated: permissions do not bind root)
    from sgdsde.experiments import output

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(output.tempfile, "TemporaryFile", refuse)
    assert cli.main(["demo", "--out", str(tmp_path / "new" / "out")]) == 2
    line = _one_line_error(capsys, "sgdsde demo: error: --out: cannot write in ")
    assert f"'{tmp_path}' (Permission denied)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]  # nothing created


CANNED = {"description": "canned", "sampling": "subset", "rows": [], "value": 1.5}


@pytest.fixture
def canned_demo(monkeypatch):
    """The demo with its computation replaced by fixed numbers (no rows: the table is its
    header)."""
    from sgdsde.experiments import ou_covariance

    monkeypatch.setattr(ou_covariance, "stationary_covariance", lambda **kwargs: dict(CANNED))
    return ou_covariance


def test_a_failing_figure_keeps_the_json_and_says_where(tmp_path, canned_demo, capsys, monkeypatch):
    def broken(results):
        raise RuntimeError("no display")

    monkeypatch.setattr(canned_demo, "plot", broken)
    assert cli.main(["demo", "--out", str(tmp_path)]) == 1
    line = _one_line_error(capsys, "sgdsde demo: error: ")
    assert f"could not draw or write {tmp_path / 'covariance.png'} (RuntimeError: no display)" in line
    assert line.rstrip().endswith(f"the numbers are in {tmp_path / 'covariance.json'}")
    assert json.loads((tmp_path / "covariance.json").read_text()) == CANNED
    assert not (tmp_path / "covariance.png").exists()


@pytest.mark.filterwarnings("ignore:No artists with labels")  # the canned results have no rows to plot
@pytest.mark.parametrize("spill", ["temporary folder", "stdout"])
def test_a_json_that_cannot_be_written_goes_elsewhere_and_says_where(tmp_path, canned_demo, capsys, monkeypatch,
                                                                     spill):
    out = tmp_path / "out"

    def run_and_block(**kwargs):  # during the run, the JSON's place becomes a folder
        (out / "covariance.json").mkdir(parents=True)
        return dict(CANNED)

    monkeypatch.setattr(canned_demo, "stationary_covariance", run_and_block)
    temporary = tmp_path / ("spill" if spill == "temporary folder" else "a_file")
    if spill == "stdout":
        temporary.write_text("x")  # the temporary folder cannot be written either
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(temporary))
    assert cli.main(["demo", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    line = captured.err
    assert line.count("\n") == 1 and f"could not write {out / 'covariance.json'}" in line
    assert (out / "covariance.png").stat().st_size > 0  # the figure still drawn
    if spill == "stdout":
        assert line.rstrip().endswith("the numbers are printed on stdout above")
        assert json.loads(captured.out[: captured.out.index("\n}\n") + 2]) == CANNED
    else:
        (saved,) = temporary.iterdir()
        assert saved.name.startswith("sgdsde-covariance-") and line.rstrip().endswith(f"the numbers are in {saved}")
        assert json.loads(saved.read_text()) == CANNED


def test_internal_errors_are_one_line_unless_debugging(canned_demo, tmp_path, capsys, monkeypatch):
    def bug(**kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(canned_demo, "stationary_covariance", bug)
    assert cli.main(["demo", "--out", str(tmp_path)]) == 1
    assert "KeyError: 'oops' (run with --debug" in _one_line_error(capsys, "sgdsde demo: error: ")
    with pytest.raises(KeyError):
        cli.main(["demo", "--out", str(tmp_path), "--debug"])
    monkeypatch.setenv("SGDSDE_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["demo", "--out", str(tmp_path)])


def test_unknown_command_and_help(capsys):
    assert cli.main(["bogus"]) == 2
    assert "invalid choice: 'bogus'" in _one_line_error(capsys, "sgdsde: error: command: ")
    assert cli.main(["minima", "--help"]) == 0
    assert "--noise N_MIN N_MAX" in capsys.readouterr().out


@pytest.mark.parametrize("script", ["sgd_vs_sde", "batch_size_learning_rate", "fokker_planck_minima",
                                    "scaling_rule"])
def test_example_scripts_check_options_before_any_work(script, tmp_path, capsys):
    """The example scripts share the command line's checks: no abbreviations, and --out is
    checked before anything runs (an existing file where a folder is wanted)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"example_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as done:
        module.main(["--qui"])
    assert done.value.code == 2 and "unrecognized arguments: --qui" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as done:
        module.main(["--out", str(blocker)])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "--out:" in err and "is not a folder" in err


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sgdsde {sd.__version__}"
