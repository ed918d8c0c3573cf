"""``sgdsde reproduce NAME --data FOLDER``: an experiment trains on a local MNIST-format
folder (small IDX files written by the nn data tests' helper) instead of the built-in
digits, and says so in its JSON."""

import json

import numpy as np
from nn.test_nn_data import _mnist_folder

from sgdsde import cli


def test_quick_reproduction_on_a_local_mnist_folder(tmp_path, capsys):
    folder, out = tmp_path / "mnist", tmp_path / "out"
    folder.mkdir()
    _mnist_folder(folder, np.random.default_rng(3), n_train=256, n_test=64)
    argv = ["reproduce", "three-factors-breaking-point", "--quick", "--data", str(folder), "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    results = json.loads((out / "three_factors_breaking_point.json").read_text())
    assert results["experiment"]["data"] == str(folder)
    assert results["num_examples"] == 256  # the folder's training set, not the 1,258 built-in digits
    assert (out / "three_factors_breaking_point.png").stat().st_size > 0
    assert results["verdicts"] and all(v["verdict"] in {"confirmed", "not confirmed", "contradicted"}
                                       for v in results["verdicts"])
