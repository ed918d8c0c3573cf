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
