"""The linear scaling rule on a network, against its SDE and the noise-to-signal prediction.

    python examples/scaling_rule.py [--out DIR] [--quick] [--replicas R] [--seed K]

SGD (iid minibatches) on an MLP over the built-in 8×8 digits at (κη, κS) for
κ = 1, 2, 4, …, 64, each for steps/κ SGD steps (the same SME time), against SVAG at the
base (η, S) (the SDE reference; docs/theory.md §8). The noise-to-signal ratio
NSR = tr C/(S‖g‖²) is measured along the base run; Li, Malladi & Arora predict that the
rule holds while κ ≲ NSR, so κ* = its smallest value is drawn on the figure beside the
first κ whose final train loss parts from the reference (|z| ≥ 3). Prints a table and
writes scaling_rule.png and scaling_rule.json (docs/network_sde.md).
"""

from __future__ import annotations

import argparse

from sgdsde.cli import integer_at_least
from sgdsde.experiments import sde_check
from sgdsde.experiments.output import check_out_dir, save_outputs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--out", default="sgdsde-output/scaling_rule", help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="κ = 1, 4, 16 on a short run (seconds)")
    parser.add_argument("--replicas", type=integer_at_least(2), default=16, help="replicas per κ (default: 16)")
    parser.add_argument("--seed", type=integer_at_least(0), default=0)
    args = parser.parse_args(argv)
    try:
        out = check_out_dir(args.out, "--out", files=("scaling_rule.json", "scaling_rule.png"))
    except ValueError as err:
        parser.error(str(err))
    results = sde_check.scaling_rule(replicas=args.replicas, seed=args.seed, quick=args.quick)
    return save_outputs(results, out, "scaling_rule", sde_check.plot_scaling, sde_check.format_scaling_table)


if __name__ == "__main__":
    main()
