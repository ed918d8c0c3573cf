"""The ``sgdsde`` command line.

    sgdsde minima [--landscape NAME|FILE.json] [--learning-rate η] [--batch-sizes S ...]
                  [--noise N_MIN N_MAX --points K] [--replicas R] [--out DIR] [--seed K]
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


def _minima(args) -> int:
    from .experiments import minima

    sizes = args.batch_sizes
    if args.noise is not None:
        sizes = minima.batch_sizes_for_noise(args.noise, args.points, args.learning_rate)
    minima.main(
        out=args.out,
        landscape_spec=minima.load_landscape(args.landscape),
        learning_rate=args.learning_rate,
        batch_sizes=sizes,
        replicas=args.replicas,
        em_dt=args.em_dt,
        escape_replicas=args.escape_replicas,
        seed=args.seed,
        progress=not args.quiet,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgdsde", description="SGD as an SDE: simulations against exact theory.")
    sub = parser.add_subparsers(dest="command", required=True)
    mini = sub.add_parser(
        "minima",
        help="which minimum SGD ends in, five ways (SGD, Euler–Maruyama, Fokker–Planck, quadrature, Laplace)",
        description="On a 2-D landscape with a deep sharp and a shallow wide minimum, the probability of each "
        "basin as a function of the noise n = η/S, computed by a discrete SGD ensemble, an Euler–Maruyama "
        "ensemble, the Fokker–Planck stationary state, exact Boltzmann quadrature and the Laplace approximation; "
        "each method's crossover noise; mean escape times (simulated, Kramers, exact on the grid). Writes a "
        "table, minima.png and minima.json. Times are SGD steps.",
    )
    mini.add_argument("--landscape", default="sharp-wide",
                      help="built-in landscape (sharp-wide, sharp-wide-high-barrier) or a JSON file with centers, "
                      "levels, hessians, softness, sigma2, num_examples, lower, upper (default: %(default)s)")
    mini.add_argument("--learning-rate", type=float, default=0.025, help="η (default: %(default)s)")
    mini.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 3, 4, 5, 6],
                      help="batch sizes S; the noise levels are n = η/S (default: %(default)s)")
    mini.add_argument("--noise", type=float, nargs=2, metavar=("N_MIN", "N_MAX"), default=None,
                      help="noise range instead of --batch-sizes: S = round(η/n) for --points log-spaced n")
    mini.add_argument("--points", type=int, default=5, help="noise levels with --noise (default: %(default)s)")
    mini.add_argument("--replicas", type=int, default=512, help="SGD and EM replicas (default: %(default)s)")
    mini.add_argument("--escape-replicas", type=int, default=256, help="replicas for escape times (default: %(default)s)")
    mini.add_argument("--em-dt", type=float, default=0.25, help="Euler–Maruyama step in SGD steps (default: %(default)s)")
    mini.add_argument("--out", default="sgdsde-output/minima", help="output folder (default: %(default)s)")
    mini.add_argument("--seed", type=int, default=0)
    mini.add_argument("--quiet", action="store_true", help="no progress lines")
    mini.set_defaults(func=_minima)
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
