"""The landscapes of the minima job (:mod:`sgdsde.experiments.minima`): the built-in
specifications, JSON loading, the ``multi_well`` problem, and the analysis of its minima
and saddles (with the basin each minimum lies in)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import landscape, problems

__all__ = ["LANDSCAPES", "load_landscape", "build_problem", "analyse_landscape"]

#: Built-in landscapes (``multi_well`` specifications). Levels are the well depths L_k,
#: hessians the well curvatures (a scalar per well: H_k = h_k I), sigma2 the isotropic
#: per-example gradient variance, box the region of the grid methods (it must hold the
#: mass at every noise level of the run).
LANDSCAPES: dict[str, dict] = {
    "sharp-wide": {
        "description": "2-D: a deep sharp minimum (L = 0, H = 8 I) and a shallow wide one (L = 0.3, H = I)",
        "centers": [[-0.7, 0.0], [0.7, 0.0]],
        "levels": [0.0, 0.3],
        "hessians": [8.0, 1.0],
        "softness": 0.15,
        "sigma2": 60.0,
        "num_examples": 1000,
        "lower": [-2.4, -2.4],
        "upper": [3.2, 2.4],
        "names": ["deep sharp", "shallow wide"],
    },
    "sharp-wide-high-barrier": {
        "description": "2-D: the same two wells further apart (barrier out of the wide well ≈ 0.63): "
                       "slower mixing, Laplace closer to exact",
        "centers": [[-0.8, 0.0], [0.8, 0.0]],
        "levels": [0.0, 0.3],
        "hessians": [8.0, 1.0],
        "softness": 0.15,
        "sigma2": 60.0,
        "num_examples": 1000,
        "lower": [-2.5, -2.4],
        "upper": [3.3, 2.4],
        "names": ["deep sharp", "shallow wide"],
    },
}


def load_landscape(name_or_path: str) -> dict:
    """A built-in landscape by name, or a JSON file with the same keys (centers, levels,
    hessians, softness, sigma2, num_examples, lower, upper; optional names)."""
    if name_or_path in LANDSCAPES:
        return dict(LANDSCAPES[name_or_path])
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"landscape: {name_or_path!r} is neither a built-in landscape ({', '.join(LANDSCAPES)}) nor a JSON file"
        )
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"landscape: cannot read {path} as JSON ({err})") from err
    if not isinstance(spec, dict):
        raise ValueError(f"landscape: {path} must hold a JSON object, got {type(spec).__name__}")
    required = ["centers", "levels", "hessians", "sigma2", "lower", "upper"]
    missing = [k for k in required if k not in spec]
    if missing:
        raise ValueError(f"landscape: {path} lacks the keys {missing}")
    spec.setdefault("softness", 0.15)
    if np.asarray(spec["centers"]).ndim != 2 or np.asarray(spec["centers"]).shape[1] != 2:
        raise ValueError(f"landscape: the minima job needs a 2-D landscape (centers of shape (K, 2)), got {spec['centers']}")
    if len(spec["levels"]) < 2:
        raise ValueError("landscape: needs at least two wells")
    spec.setdefault("num_examples", 1000)
    spec.setdefault("description", f"from {path}")
    return spec


def build_problem(spec: dict, seed: int = 0):
    """The ``multi_well`` problem of a landscape specification."""
    return problems.multi_well(
        spec["centers"], spec["levels"], spec["hessians"], softness=spec["softness"],
        sigma2=spec["sigma2"], num_examples=spec["num_examples"], key=jax.random.key(seed),
    )


def basin_probabilities(log_weights, minimum_basin, num_basins):
    """Normalised basin probabilities from per-minimum log weights (…, k)."""
    log_weights = np.asarray(log_weights, float)
    top = np.max(log_weights, axis=-1, keepdims=True)
    w = np.exp(log_weights - top)
    per_basin = np.stack([w[..., minimum_basin == b].sum(axis=-1) for b in range(num_basins)], axis=-1)
    return per_basin / per_basin.sum(axis=-1, keepdims=True)


def analyse_landscape(problem, spec: dict, *, starts: int = 64, seed: int = 0) -> dict:
    """Minima (from ``starts`` random starts in the box) and the saddles between them,
    in float64, with each minimum's basin label."""
    info = problem.info
    loss, classify = info["loss"], info["classify"]
    lower, upper = np.asarray(spec["lower"], float), np.asarray(spec["upper"], float)
    with jax.enable_x64(True):
        points = np.random.default_rng(seed).uniform(lower, upper, size=(starts, lower.size))
        minima = landscape.find_minima(loss, jnp.asarray(points))
        saddles = landscape.find_saddles(loss, minima)
        basin = np.array([int(classify(jnp.asarray(p))) for p in minima.points])
    return {"minima": minima, "saddles": saddles, "minimum_basin": basin}


def lowest_in_basin(minima, minimum_basin, basin: int) -> int:
    candidates = np.flatnonzero(minimum_basin == basin)
    if candidates.size == 0:
        raise ValueError(f"landscape: no minimum was found in basin {basin}; check the box and the wells")
    return int(candidates[np.argmin(minima.losses[candidates])])
