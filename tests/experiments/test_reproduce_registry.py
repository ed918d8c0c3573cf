"""The registry of the seed papers' experiments and ``sgdsde reproduce``: --list, usage
errors, one quick run end to end through the command line (JSON + PNG + verdicts), and
resuming a reproduction after one configuration file is deleted."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sgdsde import cli
from sgdsde.experiments import reproduce

from ._he_liu_tao_run import quick_cli_run

VERDICT_FIELDS = {"claim", "statistic", "value", "interval", "p_value", "verdict", "text"}
VERDICTS = {reproduce.CONFIRMED, reproduce.NOT_CONFIRMED, reproduce.CONTRADICTED}


def test_every_experiment_module_is_registered():
    folder = Path(reproduce.__file__).parent
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    assert modules <= set(reproduce._MODULES), f"not in _MODULES: {modules - set(reproduce._MODULES)}"
    found = reproduce.experiments()
    assert "he-liu-tao" in found and reproduce.names() == list(found)
    labels = [e.label for e in found.values()]
    assert len(set(labels)) == len(labels)
    for e in found.values():
        assert e.name and e.label and e.paper and e.claim and callable(e.run)


def test_list_names_every_experiment(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    for e in reproduce.experiments().values():
        entry = [line for line in lines if line.split()[:2] == [e.label, f"{e.name}:"]]
        assert len(entry) == 1, e.name
    assert "Control Batch Size and Learning Rate" in out
    assert " ".join(out.split()).count("Claim:") == len(reproduce.experiments())


def test_get_by_name_or_label():
    assert reproduce.get("hlt") is reproduce.get("he-liu-tao")
    with pytest.raises(ValueError, match="he-liu-tao"):
        reproduce.get("no-such-experiment")


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "no-such-experiment"], "NAME: no experiment 'no-such-experiment'; the experiments are"),
    (["reproduce"], "give an experiment NAME"),
    (["reproduce", "he-liu-tao", "--list"], "--list"),
    (["reproduce", "he-liu-tao", "--format", "mnist"], "--format: names the format of a --data folder"),
    (["reproduce", "he-liu-tao", "--seed", "-1"], "--seed"),
    (["reproduce", "he-liu-tao", "--quic"], "unrecognized arguments: --quic"),
])
def test_usage_errors_exit_2(argv, message, capsys, tmp_path):
    assert cli.main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("sgdsde reproduce: error:") and len(err.splitlines()) == 1
    if "no experiment" in message:
        for name in reproduce.names():
            assert name in err
    assert not any(tmp_path.iterdir())  # nothing ran


def test_bad_data_folder_and_out_are_named(capsys, tmp_path):
    assert cli.main(["reproduce", "he-liu-tao", "--quick", "--quiet", "--data", str(tmp_path / "absent"),
                     "--out", str(tmp_path / "out")]) == 2
    assert "--data:" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert cli.main(["reproduce", "he-liu-tao", "--quick", "--quiet", "--out", str(tmp_path / "file")]) == 2
    assert "--out:" in capsys.readouterr().err


@pytest.fixture
def cli_run():
    """``sgdsde reproduce he-liu-tao --quick`` once per session (the command line end to
    end; shared with test_reproduce_he_liu_tao.py)."""
    return quick_cli_run()


def test_cli_end_to_end_writes_json_png_and_verdicts(cli_run, capsys):
    status, out = cli_run
    assert status == 0
    assert (out / "he_liu_tao.png").stat().st_size > 10_000
    results = json.loads((out / "he_liu_tao.json").read_text())
    assert results["experiment"] == {"name": "he-liu-tao", "label": "hlt", "paper": reproduce.get("hlt").paper,
                                     "claim": reproduce.get("hlt").claim, "quick": True, "seed": 0, "data": None}
    assert results["runtime_s"] > 0
    assert results["verdicts"]
    for v in results["verdicts"]:
        assert set(v) == VERDICT_FIELDS and v["verdict"] in VERDICTS and v["statistic"] == "spearman"
    assert {"epochs", "steps"} <= set(results["budgets"])
    assert (out / "he-liu-tao-sweeps" / "steps" / "manifest.json").is_file()


def test_resume_after_deleting_one_configuration(cli_run):
    """Delete one finished configuration of one sweep, run again: the same numbers, and
    only that file is written again (the others keep their modification times)."""
    status, out = cli_run
    assert status == 0
    before = json.loads((out / "he_liu_tao.json").read_text())
    files = sorted((out / "he-liu-tao-sweeps").rglob("config_*.npz"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    victim = [f for f in files if "epochs-S" in str(f)][1]
    with np.load(victim) as z:
        content = {k: z[k] for k in z.files}
    victim.unlink()
    after = reproduce.reproduce("he-liu-tao", quick=True, out=out, progress=False)
    assert victim.is_file()
    with np.load(victim) as z:
        assert set(z.files) == set(content)
        for k in z.files:
            np.testing.assert_array_equal(z[k], content[k], err_msg=k)
    for f in files:
        if f != victim:
            assert f.stat().st_mtime_ns == stamps[f], f"{f.name} was rewritten"
    for budget, grid in before["budgets"].items():
        for key, value in grid.items():
            if key != "seconds":
                np.testing.assert_array_equal(np.asarray(after["budgets"][budget][key]), np.asarray(value),
                                              err_msg=f"{budget}/{key}")
    value = lambda v: np.nan if v["value"] is None else v["value"]  # NaN is null in the JSON
    assert [value(v) for v in after["verdicts"]] == pytest.approx([value(v) for v in before["verdicts"]],
                                                                  nan_ok=True)


def test_modules_not_written_yet_are_left_out_and_import_errors_raised(monkeypatch, tmp_path):
    """A module named in _MODULES that does not exist yet is left out of the list; one that
    exists but fails to import raises its error (never hidden)."""
    monkeypatch.setattr(reproduce, "_MODULES", (*reproduce._MODULES, "not_written_yet"))
    assert "he-liu-tao" in reproduce.experiments()
    (tmp_path / "broken_experiment.py").write_text("raise ImportError('broken on purpose')\n")
    monkeypatch.setattr(reproduce, "__path__", [*reproduce.__path__, str(tmp_path)])
    monkeypatch.setattr(reproduce, "_MODULES", (*reproduce._MODULES, "broken_experiment"))
    with pytest.raises(ImportError, match="broken on purpose"):
        reproduce.experiments()


def test_other_options_into_the_same_out_are_refused(cli_run, capsys):
    """The sweeps of a run with other options (here --seed) are not resumed: exit 2, one
    line naming --out and the folder, nothing written."""
    status, out = cli_run
    assert status == 0
    stamps = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()}
    assert cli.main(["reproduce", "he-liu-tao", "--quick", "--quiet", "--out", str(out), "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sgdsde reproduce: error: --out:") and "he-liu-tao-sweeps" in err
    assert len(err.splitlines()) == 1
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()} == stamps
