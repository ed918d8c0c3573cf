"""``sgdsde sde-check``: the quick command writes its table, figure and JSON; the numbers'
invariants (SVAG(1) is SGD bit for bit with the same keys, positive error bars, finite
noise scales on the SGD-step clock); the weak-error fit in 1/ℓ against a closed form;
bad input named before any work."""

import json

import jax
import numpy as np
import pytest
from nn.test_nn_data import _mnist_folder

from sgdsde import cli
from sgdsde.experiments import sde_check


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("sde_check")
    code = cli.main(["sde-check", "--quick", "--replicas", "4", "--out", str(out), "--quiet"])
    return code, out, json.loads((out / "sde_check.json").read_text())


def test_quick_command_writes_table_figure_and_json(quick, capsys):
    code, out, results = quick
    assert code == 0
    assert (out / "sde_check.png").stat().st_size > 20_000
    assert set(results["runs"]) == {"sgd", "svag1", "svag2", "svag4", "sde"}
    for field in ("spec", "data", "model", "weak_error", "noise_scales", "svag1_equals_sgd", "runtime_s", "machine"):
        assert field in results, field
    assert results["data"] == {"name": "digits", "train_examples": 1258, "test_examples": 359,
                               "input_shape": [8, 8, 1], "num_classes": 10}
    table = sde_check.format_table(results)
    assert "bit for bit: yes" in table and max(len(line) for line in table.splitlines()) <= 100


def test_quick_numbers_invariants(quick):
    _, _, results = quick
    runs = results["runs"]
    # SVAG(1) is SGD's step function: with SGD's keys, the same numbers bit for bit
    assert results["svag1_equals_sgd"] is True
    assert runs["svag1"]["samples"] == runs["sgd"]["samples"]
    assert runs["svag1"]["curves"] == runs["sgd"]["curves"]
    # every curve is on the SGD-step clock (SVAG(ℓ) makes ℓ calls per step, the SDE 1/dt)
    steps, every = results["spec"]["steps"], results["spec"]["every"]
    for key, run in runs.items():
        assert run["times"] == list(range(0, steps + 1, every)), key
        assert run["diverged"] == 0, key
        for metric, curve in run["curves"].items():
            # one initialisation: no spread at t = 0; independent keys: a positive error bar after it
            assert curve["stderr"][0] == 0, (key, metric)
            assert all(s > 0 for s in curve["stderr"][1:]), (key, metric)
    assert [runs[k]["calls_per_sgd_step"] for k in ("sgd", "svag2", "svag4", "sde")] == [1, 2, 4, 2]
    weak = results["weak_error"]
    assert weak["ells"] == [1, 2] and weak["reference_ell"] == 4
    for name in sde_check.OBSERVABLES:
        assert all(s > 0 for s in weak[name]["stderr"]), name
    noise = results["noise_scales"]
    for name in ("b_simple", "b_noise", "nsr"):
        assert all(np.isfinite(v) and v > 0 for v in noise[name]), (name, noise[name])
    # NSR = f·B_simple/S with f = (N − S)/(N − 1) (subset sampling)
    n, s = results["data"]["train_examples"], results["spec"]["batch_size"]
    np.testing.assert_allclose(noise["nsr"], np.asarray(noise["b_simple"]) * (n - s) / (n - 1) / s, rtol=1e-6)
    assert noise["kappa_star"] == pytest.approx(min(noise["nsr"]), rel=1e-6)


def _fake_runs(ells, intercept, slope, spread, replicas=64):
    """Runs whose per-replica samples have means exactly intercept + slope/ℓ (antithetic
    ± spread about the mean) for every observable."""
    signs = np.where(np.arange(replicas) % 2 == 0, 1.0, -1.0)
    runs = {}
    for ell in ells:
        samples = intercept + slope / ell + spread * signs
        runs["sgd" if ell == 1 else f"svag{ell}"] = {"samples": {n: samples for n in sde_check.OBSERVABLES}}
    return runs


def test_weak_error_fit_recovers_order_one_in_one_over_ell():
    # E_ℓ = a + c/ℓ exactly, so Δ(ℓ) = c(1/ℓ − 1/16): the fit of |Δ| ∝ (1/ℓ − 1/16)^p gives
    # p = 1 up to rounding of log|Δ| in float64 (~1e-15; 1e-9 leaves room for the GLS solve)
    ells = [1, 2, 4, 8, 16]
    weak = sde_check.weak_error_in_ell(_fake_runs(ells, 0.3, 0.2, 1e-3), ells)
    for name in sde_check.OBSERVABLES:
        for fit in (weak[name]["order"], weak[name]["order_svag"]):  # all ℓ; SVAG alone (ℓ ≥ 2)
            assert fit["slope"] == pytest.approx(1.0, abs=1e-9)
        assert list(weak[name]["order_svag"]["used"]) == [False, True, True, True]
        assert np.all(weak[name]["resolved"])
        np.testing.assert_allclose(weak[name]["value"], 0.2 * (1 / np.array(ells[:-1]) - 1 / 16), rtol=1e-12)
        # the error bar of Δ is the replica standard errors of both means in quadrature:
        # each run's se = spread·√(R/(R − 1))/√R for ± spread samples
        se = 1e-3 * np.sqrt(64 / 63) / np.sqrt(64)
        np.testing.assert_allclose(weak[name]["stderr"], np.sqrt(2) * se, rtol=1e-9)


def test_weak_error_fit_leaves_out_unresolved_gaps():
    # a spread 10³ times the gaps: no |z| ≥ 3, so no fit, and it says why
    ells = [1, 2, 4]
    weak = sde_check.weak_error_in_ell(_fake_runs(ells, 0.3, 0.002, 2.0), ells)
    assert not np.any(weak["train_loss"]["resolved"])
    assert np.isnan(weak["train_loss"]["order"]["slope"]) and "no fit" in weak["train_loss"]["order"]["note"]


@pytest.fixture
def no_work(monkeypatch):
    monkeypatch.setattr(sde_check, "_ensemble", lambda *a, **k: pytest.fail("the experiment ran"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "150"], "--steps: must be a multiple of every (50) and noise_every (100), got 150"),
        (["--format", "mnist"], "--format: names the format of a --data folder; give --data too"),
        (["--data", "/nonexistent/folder"], "--data: '/nonexistent/folder' is not a folder"),
        (["--replicas", "1"], "--replicas: must be an integer ≥ 2, got 1"),
        (["--batch-size", "5000"], "--batch-size: at most N = 1258, got 5000"),
    ],
)
def test_bad_input_is_named_before_work(argv, message, no_work, tmp_path, capsys):
    assert cli.main(["sde-check", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_data_format_detected_from_file_names(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    (tmp_path / "cifar" / "cifar-10-batches-bin").mkdir(parents=True)
    (tmp_path / "cifar" / "cifar-10-batches-bin" / "data_batch_1.bin").write_bytes(b"")
    assert sde_check._detect_format(tmp_path / "mnist") == "mnist"
    assert sde_check._detect_format(tmp_path / "cifar") == "cifar10"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="data: cannot tell the format"):
        sde_check._detect_format(tmp_path / "empty")


def test_scaling_rule_quick_invariants():
    results = sde_check.scaling_rule(quick=True, replicas=2, progress=False, spec={"kappas": [1, 4]})
    spec = results["spec"]
    eta, size, steps = spec["learning_rate"], spec["batch_size"], spec["steps"]
    ref = results["reference"]
    for entry in results["runs"]:
        kappa = entry["kappa"]
        # (κη, κS) for steps/κ steps: the same SME time η·steps for every κ
        assert (entry["learning_rate"], entry["batch_size"], entry["steps"]) == (kappa * eta, kappa * size,
                                                                                steps // kappa)
        assert entry["diverged"] == 0
        for name in ("train_loss", "test_accuracy"):
            gap = entry[name + "_mean"] - ref[name + "_mean"]
            assert entry[name + "_gap"] == pytest.approx(gap, abs=1e-12)
            assert entry[name + "_gap_stderr"] > 0
            assert entry[name + "_gap_z"] == pytest.approx(gap / entry[name + "_gap_stderr"], rel=1e-12)
    noise = results["noise_scales"]
    # iid sampling: NSR = B_simple/S (no finite-population factor); κ* its smallest value
    np.testing.assert_allclose(noise["nsr"], np.asarray(noise["b_simple"]) / size, rtol=1e-6)
    assert results["kappa_star"] == pytest.approx(min(noise["nsr"]), rel=1e-6) and results["kappa_star"] > 0
    parted = [e["kappa"] for e in results["runs"] if abs(e["train_loss_gap_z"]) >= spec["min_z"]]
    assert results["first_parting_kappa"] == (parted[0] if parted else None)
    table = sde_check.format_scaling_table(results)
    assert "κ*" in table and max(len(line) for line in table.splitlines()) <= 100


@pytest.mark.parametrize("dotted", [False, True], ids=["dashed", "dotted"])
def test_load_data_reads_a_local_mnist_folder(tmp_path, dotted):
    arrays = _mnist_folder(tmp_path, np.random.default_rng(0), n_train=40, n_test=10, dotted=dotted)
    splits = sde_check.load_data(tmp_path, key=jax.random.key(0), train_examples=20)
    assert splits.train.name == "mnist" and splits.validation is None
    assert splits.train.num_examples == 20 and splits.test.num_examples == 10
    np.testing.assert_array_equal(splits.train.y, arrays["train"][1][:20])  # the first 20, in order
    np.testing.assert_array_equal(splits.test.y, arrays["t10k"][1])
    with pytest.raises(ValueError, match="data_format: 'mnist' needs a folder"):
        sde_check.load_data(None, "mnist", key=jax.random.key(0))
