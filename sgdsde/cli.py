"""The ``sgdsde`` command line.

    sgdsde minima [--landscape NAME|FILE.json] [--learning-rate η] [--batch-sizes S ...]
                  [--noise N_MIN N_MAX [--points K]] [--replicas R] [--out DIR] [--seed K]
    sgdsde demo [--out DIR] [--sampling subset|iid|epoch] [--learning-rates η ...] [--batch-sizes S ...]
                [--replicas R] [--sample-steps T] [--seed K] [--quiet]
    sgdsde sde-check [--data FOLDER [--format F]] [--steps K] [--replicas R] [--quick] [--out DIR] [--seed K]
    sgdsde reproduce --list
    sgdsde reproduce NAME [--quick] [--data FOLDER [--format F]] [--out DIR] [--seed K] [--quiet]

Every option is checked before any work: counts and ranges, the landscape file, and the
output folder (it must be a folder, or creatable, and writable). Options are never
abbreviated. An error is one line naming the option, with exit status 2 for bad input
and 1 for a failure after the run (its message says where the numbers went: the JSON is
written before the figure). ``--debug`` or ``SGDSDE_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse without abbreviated options, whose errors raise :class:`UsageError`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(self.prog, message.removeprefix("argument "))


def integer_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ ``minimum``."""
    wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer ≥ {minimum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _demo(args) -> int:
    from .experiments import ou_covariance

    ou_covariance.main(
        out=args.out,
        learning_rates=args.learning_rates,
        batch_sizes=args.batch_sizes,
        sampling=args.sampling,
        replicas=args.replicas,
        sample_steps=args.sample_steps,
        seed=args.seed,
        progress=not args.quiet,
    )
    return 0


def _minima(args) -> int:
    from .experiments import minima

    if args.noise is None and args.points is not None:
        raise UsageError(args.parser.prog, "--points: sets the number of noise levels of --noise; give --noise too")
    if args.noise is not None:
        if args.batch_sizes is not None:
            raise UsageError(args.parser.prog, "--noise: give either --noise or --batch-sizes, not both")
        low, high = args.noise
        if not low < high:
            raise UsageError(args.parser.prog, f"--noise: N_MIN must be smaller than N_MAX, got {low:g} {high:g}")
        sizes = minima.batch_sizes_for_noise(args.noise, args.points or 5, args.learning_rate)
    else:
        sizes = args.batch_sizes or [2, 3, 4, 5, 6]
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


def _sde_check(args) -> int:
    from .experiments import sde_check

    if args.format is not None and args.data is None:
        raise UsageError(args.parser.prog, "--format: names the format of a --data folder; give --data too")
    spec = {key: value for key, value in (("learning_rate", args.learning_rate), ("batch_size", args.batch_size),
                                          ("train_examples", args.train_examples), ("sde", args.sde))
            if value is not None}
    sde_check.main(
        out=args.out,
        data=args.data,
        data_format=args.format,
        replicas=args.replicas,
        steps=args.steps,
        seed=args.seed,
        quick=args.quick,
        spec=spec,
        progress=not args.quiet,
    )
    return 0


def _reproduce(args) -> int:
    from .experiments import reproduce

    prog = args.parser.prog
    if args.list:
        if args.name is not None:
            raise UsageError(prog, "--list: lists the experiments and runs none; give either NAME or --list")
        print(reproduce.format_list())
        return 0
    if args.name is None:
        raise UsageError(prog, "give an experiment NAME (sgdsde reproduce --list shows them)")
    if args.format is not None and args.data is None:
        raise UsageError(prog, "--format: names the format of a --data folder; give --data too")
    try:
        name = reproduce.get(args.name).name
    except ValueError as err:
        raise UsageError(prog, f"NAME: {str(err).removeprefix('name: ')}") from None
    reproduce.reproduce(name, quick=args.quick, data=args.data, data_format=args.format, out=args.out,
                        seed=args.seed, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sgdsde", description="SGD as an SDE: simulations against exact theory.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"sgdsde {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also: environment variable SGDSDE_DEBUG=1)")
    mini = sub.add_parser(
        "minima",
        parents=[common],
        help="which minimum SGD ends in, five ways (SGD, Euler–Maruyama, Fokker–Planck, quadrature, Laplace)",
        description="On a 2-D landscape with a deep sharp and a shallow wide minimum, the probability of each "
        "basin as a function of the noise n = η/S, computed by a discrete SGD ensemble, an Euler–Maruyama "
        "ensemble, the Fokker–Planck stationary state, exact Boltzmann quadrature and the Laplace approximation; "
        "each method's crossover noise; mean escape times (simulated, Kramers, exact on the grid). Writes a "
        "table, minima.json and minima.png. Times are SGD steps.",
    )
    mini.add_argument("--landscape", default="sharp-wide",
                      help="built-in landscape (sharp-wide, sharp-wide-high-barrier) or a JSON file with centers, "
                      "levels, hessians, softness, sigma2, num_examples, lower, upper (default: %(default)s)")
    mini.add_argument("--learning-rate", type=positive_number, default=0.025, help="η (default: %(default)s)")
    mini.add_argument("--batch-sizes", type=integer_at_least(1), nargs="+", default=None,
                      help="batch sizes S; the noise levels are n = η/S (default: 2 3 4 5 6)")
    mini.add_argument("--noise", type=positive_number, nargs=2, metavar=("N_MIN", "N_MAX"), default=None,
                      help="noise range instead of --batch-sizes: S = round(η/n) for --points log-spaced n")
    mini.add_argument("--points", type=integer_at_least(1), default=None,
                      help="noise levels with --noise (default: 5)")
    mini.add_argument("--replicas", type=integer_at_least(2), default=512, help="SGD and EM replicas (default: %(default)s)")
    mini.add_argument("--escape-replicas", type=integer_at_least(2), default=256,
                      help="replicas for escape times (default: %(default)s)")
    mini.add_argument("--em-dt", type=positive_number, default=0.25,
                      help="Euler–Maruyama step in SGD steps, at most 1 (default: %(default)s)")
    mini.add_argument("--out", default="sgdsde-output/minima", help="output folder (default: %(default)s)")
    mini.add_argument("--seed", type=integer_at_least(0), default=0)
    mini.add_argument("--quiet", action="store_true", help="no progress lines")
    mini.set_defaults(func=_minima, parser=mini, aliases={"noise range": "--noise"})
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="SGD ensemble covariance on a 3-D quadratic vs exact discrete theory and the SDE",
        description="Stationary covariance of an SGD ensemble on a 3-D anisotropic quadratic with "
        "non-diagonal gradient noise, for a grid of (learning rate, batch size), next to the exact "
        "discrete prediction and the SDE (continuous Lyapunov) prediction. Writes a table, "
        "covariance.json and covariance.png. About 15 s on 2 CPU cores with the defaults; the "
        "Monte-Carlo error bars shrink like 1/sqrt(replicas × sample steps). Times are SGD steps.",
    )
    demo.add_argument("--out", default="sgdsde-output/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--sampling", default="subset", choices=["subset", "iid", "epoch"],
                      help="minibatch scheme (default: %(default)s)")
    demo.add_argument("--learning-rates", type=positive_number, nargs="+", metavar="η",
                      default=[0.025, 0.05, 0.1, 0.2, 0.4], help="learning rates (default: 0.025 0.05 0.1 0.2 0.4)")
    demo.add_argument("--batch-sizes", type=integer_at_least(1), nargs="+", metavar="S", default=[8, 32],
                      help="batch sizes, at most N = 256 (default: 8 32)")
    demo.add_argument("--replicas", type=integer_at_least(2), default=1000,
                      help="SGD replicas per configuration (default: %(default)s)")
    demo.add_argument("--sample-steps", type=integer_at_least(1), default=1500,
                      help="SGD steps averaged after the burn-in of 8 relaxation times (default: %(default)s)")
    demo.add_argument("--seed", type=integer_at_least(0), default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress lines")
    demo.set_defaults(func=_demo, parser=demo, aliases={})
    check = sub.add_parser(
        "sde-check",
        parents=[common],
        help="SGD vs SVAG(ℓ) vs its SDE on an MLP: curves, weak error in 1/ℓ, noise scales",
        description="Trains an MLP on the built-in 8x8 digits (or a --data folder) from one initialisation "
        "with SGD, SVAG(ℓ) for ℓ = 2, 4, 8, 16 and the SDE (Euler–Maruyama with the empirical gradient "
        "covariance): train/test loss and accuracy curves with Monte-Carlo error bars on the SGD-step clock, "
        "the weak error of SVAG(ℓ) against the largest ℓ with its fitted order in 1/ℓ, and B_simple and "
        "B_crit along SGD. Writes a table, sde_check.json and sde_check.png.",
    )
    check.add_argument("--data", default=None, metavar="FOLDER",
                       help="a local MNIST / Fashion-MNIST (IDX) or CIFAR-10/100 (binary) folder "
                       "(default: the built-in digits)")
    check.add_argument("--format", default=None, choices=["mnist", "fashion_mnist", "cifar10", "cifar100"],
                       help="the format of --data (default: detected from the file names)")
    check.add_argument("--train-examples", type=integer_at_least(2), default=None, metavar="N",
                       help="train on the first N training examples (default: all)")
    check.add_argument("--learning-rate", type=positive_number, default=None, metavar="η", help="η (default: 1.0)")
    check.add_argument("--batch-size", type=integer_at_least(1), default=None, metavar="S", help="S (default: 32)")
    check.add_argument("--steps", type=integer_at_least(1), default=None, metavar="K",
                       help="SGD steps, a multiple of 100 (default: 1000; --quick: 100)")
    check.add_argument("--sde", default=None, choices=["em", "sme2"],
                       help="the SDE solver: em (Euler–Maruyama, the first-order SDE) or sme2 (the second-order "
                       "modified equation, drift g + (η/2)Hg) (default: em)")
    check.add_argument("--replicas", type=integer_at_least(2), default=32, metavar="R",
                       help="SGD and SVAG replicas (default: %(default)s)")
    check.add_argument("--quick", action="store_true", help="a tiny run (seconds; the test suite)")
    check.add_argument("--out", default="sgdsde-output/sde_check", metavar="DIR",
                       help="output folder (default: %(default)s)")
    check.add_argument("--seed", type=integer_at_least(0), default=0, metavar="K", help="random seed (default: 0)")
    check.add_argument("--quiet", action="store_true", help="no progress lines")
    check.set_defaults(func=_sde_check, parser=check, aliases={"data_format": "--format"})
    repro = sub.add_parser(
        "reproduce",
        parents=[common],
        help="the seed papers' experiments, each claim against our measurement with a verdict",
        description="Runs one experiment of Jastrzębski et al. (2018), Smith & Le (2018) or He, Liu & Tao "
        "(2019) on the built-in 8x8 digits (or a --data folder) and prints the paper's claim beside the "
        "measured statistic and a verdict (confirmed, not confirmed, contradicted). Writes a table, "
        "<name>.json and <name>.png in --out (the name with _ for -); grids run as resumable sweeps in "
        "<out>/<name>-sweeps, so a run started again with the same arguments continues where it stopped. "
        "--list shows the experiments (docs/reproductions.md).",
    )
    repro.add_argument("name", nargs="?", default=None, metavar="NAME",
                       help="the experiment (its name or label; see --list)")
    repro.add_argument("--list", action="store_true", help="list the experiments, their papers and claims; run none")
    repro.add_argument("--quick", action="store_true", help="a small version (under a minute; the test suite)")
    repro.add_argument("--data", default=None, metavar="FOLDER",
                       help="a local MNIST / Fashion-MNIST (IDX) or CIFAR-10/100 (binary) folder "
                       "(default: the built-in digits)")
    repro.add_argument("--format", default=None, choices=["mnist", "fashion_mnist", "cifar10", "cifar100"],
                       help="the format of --data (default: detected from the file names)")
    repro.add_argument("--out", default="sgdsde-output/reproduce", metavar="DIR",
                       help="output folder (default: %(default)s)")
    repro.add_argument("--seed", type=integer_at_least(0), default=0, metavar="K", help="random seed (default: 0)")
    repro.add_argument("--quiet", action="store_true", help="no progress lines")
    repro.set_defaults(func=_reproduce, parser=repro, aliases={"data_format": "--format", "name": "NAME"})
    return parser


def _name_the_option(message: str, parser: argparse.ArgumentParser, aliases: dict) -> str:
    """A library message 'name: …' with ``name`` replaced by the option that sets it
    ('batch_sizes: …' → '--batch-sizes: …'; a singular name matches a plural option;
    ``aliases``: other names)."""
    name, sep, rest = message.partition(": ")
    options = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    options |= {dest.removesuffix("s"): option for dest, option in options.items()} | aliases
    return f"{options[name]}: {rest}" if sep and name in options else message


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (module docstring)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise UsageError(args.parser.prog, f"unrecognized arguments: {' '.join(extra)}")
    except UsageError as err:
        print(f"{err.prog}: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    from .experiments.output import OutputError

    prog = args.parser.prog
    try:
        return args.func(args)
    except Exception as err:
        if args.debug or os.environ.get("SGDSDE_DEBUG", "") not in ("", "0"):
            raise
        text = " ".join(str(err).split())
        if isinstance(err, (UsageError, ValueError)):
            status, line = 2, _name_the_option(text, args.parser, args.aliases)
        elif isinstance(err, OutputError):
            status, line = 1, text
        else:
            status, line = 1, f"{type(err).__name__}: {text} (run with --debug for the traceback)"
        print(f"{prog}: error: {line}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
