"""Tolerances for comparing two *different* computations of the same number.

XLA compiles reductions differently for each CPU (vector width, unrolling, threading),
and a NumPy recomputation sums in yet another order, so two code paths agree only to
the rounding of the terms they sum — never bit for bit. A sum s = Σ t_i of n terms,
evaluated in any order in floating point with unit roundoff u = eps/2, is within
γ_n·Σ|t_i| of the exact sum, γ_n = n·u/(1 − n·u) (Higham, *Accuracy and Stability of
Numerical Algorithms*, §4.2). Two evaluations therefore differ by at most 2γ_n·Σ|t_i|
≈ n·eps·Σ|t_i|; each term's own evaluation (k floating-point operations) adds k·eps·|t_i|.

Bit-for-bit assertions are kept only where the *same* program runs twice.
"""

from __future__ import annotations

import numpy as np


def rounding_atol(abs_sum, operations: int, dtype=np.float64) -> float:
    """Bound on |a − b| for two evaluations of one sum in different orders:
    ``operations``·eps·Σ|t_i|, where ``abs_sum`` = Σ|t_i| (the size of the terms summed,
    not of the result, which may be much smaller after cancellation) and ``operations``
    = the number of terms summed plus the operations spent on each term."""
    return float(operations * np.finfo(dtype).eps * np.max(np.abs(abs_sum)))


def iterated_map_atol(step_abs_sum, operations: int, steps: int, contraction: float = 1.0,
                      dtype=np.float64) -> float:
    """Bound on |θ_K − θ'_K| for two evaluations of one iterated map θ_{k+1} = F(θ_k)
    (an SGD / SDE trajectory: same keys, same batches) that round differently at each step.

    Step k adds a rounding error δ ≤ ``operations``·eps·``step_abs_sum``, where
    ``step_abs_sum`` bounds Σ|terms| of one update over the run (|θ| + η·Σ|terms of ĝ|,
    e.g. |θ| + η(‖A‖·|θ| + max|x_i|) for a quadratic) and ``operations`` = terms summed
    plus operations per term. An error made at step j is carried to step K by the map's
    Jacobians, of norm ≤ ``contraction`` = ρ (ρ = max|1 − ηλ| < 1 for a stable SGD step
    on a quadratic; ρ = 1 when nothing contracts, e.g. momentum or a short run), so the
    errors add to at most δ·Σ_{j<K} ρ^j = δ·min(K, 1/(1 − ρ))."""
    if not 0 <= contraction <= 1:
        raise ValueError("contraction must be in [0, 1]")
    amplification = steps if contraction >= 1 else min(steps, 1.0 / (1.0 - contraction))
    return amplification * rounding_atol(step_abs_sum, operations, dtype)
