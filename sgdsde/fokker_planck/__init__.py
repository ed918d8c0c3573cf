"""Fokker–Planck grid solvers: the density view of SGD's Langevin model (docs/theory.md §3).

    ∂P/∂t = ∇·[η g P + (η²/2S) ∇·(C P)]   (SGD-step time; divide by η for SME time)

on a rectilinear grid in 1–3 dimensions (and the (θ, v) phase space of the momentum
form), with Scharfetter–Gummel fluxes built from loss differences between neighbouring
cells: for gradient drift with constant isotropic noise the discrete stationary state is
exactly the Boltzmann law at the cell centres. States are masses per cell (sum 1).

    import sgdsde.fokker_planck as fp
    g = fp.grid(-2.5, 2.5, 400)
    gen = fp.generator(g, problem, hyper=sd.Hyper(0.1, 8), noise=sd.noise.isotropic(1.0))
    sol = fp.evolve(gen, fp.gaussian(g, 1.0, 0.05**2), 50.0, dt=0.05)
    pi = fp.stationary(gen); fp.spectral_gap(gen)

See docs/fokker_planck.md.
"""

from .grid import Grid, from_density, gaussian, grid, point_mass
from .observables import basin_masses, boltzmann, currents, histogram, marginal
from .operator import Generator, bernoulli, langevin_generator
from .solve import (
    PECLET_LIMIT,
    CoarseGridWarning,
    ConvergenceError,
    ConvergenceWarning,
    Solution,
    evolve,
    peclet_numbers,
    residual,
    spectral_gap,
    stationary,
)
from .system import generator, momentum_generator

__all__ = [
    "Grid",
    "grid",
    "gaussian",
    "point_mass",
    "from_density",
    "Generator",
    "langevin_generator",
    "generator",
    "momentum_generator",
    "bernoulli",
    "Solution",
    "evolve",
    "stationary",
    "spectral_gap",
    "residual",
    "peclet_numbers",
    "marginal",
    "basin_masses",
    "currents",
    "histogram",
    "boltzmann",
    "CoarseGridWarning",
    "ConvergenceWarning",
    "ConvergenceError",
    "PECLET_LIMIT",
]
