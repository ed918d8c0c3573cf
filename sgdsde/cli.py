"""The ``sgdsde`` command line.

    sgdsde demo [--out DIR] [--sampling subset|iid|epoch] [--replicas R] [--seed K]
"""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    from .experiments import ou_covariance

    ou_covariance.main(
        out=args.out,
        learning_rates=args.learning_rates,
        batch_sizes=args.batch_sizes,
        sampling=args.sampling,
        replicas=args.replicas,
        seed=args.seed,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgdsde", description="SGD as an SDE: simulations against exact theory.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="SGD ensemble covariance on a 3-D quadratic vs exact discrete theory and the SDE",
        description="Stationary covariance of an SGD ensemble on a 3-D anisotropic quadratic with "
        "non-diagonal gradient noise, for a grid of (learning rate, batch size), next to the exact "
        "discrete prediction and the SDE (continuous Lyapunov) prediction. Writes a table, "
        "covariance.png and covariance.json.",
    )
    demo.add_argument("--out", default="sgdsde-output/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--sampling", default="subset", choices=["subset", "iid", "epoch"],
                      help="minibatch scheme (default: %(default)s)")
    demo.add_argument("--learning-rates", type=float, nargs="+", default=[0.025, 0.05, 0.1, 0.2, 0.4])
    demo.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    demo.add_argument("--replicas", type=int, default=1000, help="SGD replicas per configuration")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"sgdsde {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
