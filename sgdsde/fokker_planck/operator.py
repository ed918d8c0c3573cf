"""The finite-volume Fokker–Planck operator (a Markov generator on the grid's cells).

Equation (density p, drift b = −∇U or a given field, diffusion D):

    ∂p/∂t = ∇·(∇U p) + Σ_ij ∂_i ∂_j (D_ij p)          (docs/theory.md §3 with U = ηL, D = η²C/(2S)).

State: ``mass``, the probability mass per cell (shape ``grid.shape``, sums to 1). The
operator is a Markov generator G: dmass/dt = G mass, with non-negative off-diagonal
rates and zero column sums, so mass is conserved exactly and every backward-Euler step
(I − Δt G)⁻¹ is a non-negative matrix.

Fluxes (Scharfetter–Gummel / Chang–Cooper). Across the face between cell i and its
neighbour i+1 along axis a (spacing h), with ψ the "potential in units of D":

    F = k⁺ m_i − k⁻ m_{i+1},   k⁺ = D_i B(Δψ)/h²,   k⁻ = D_{i+1} B(−Δψ)/h²,
    B(x) = x/(eˣ − 1)  (the Bernoulli function; B(−x) = B(x) + x).

- potential U, constant diagonal D: Δψ = (U_{i+1} − U_i)/D_a (loss *differences* between
  neighbouring cells), so k⁺/k⁻ = exp(−ΔU/D_a): detailed balance along every edge, and
  the discrete stationary state is exactly m ∝ exp(−U/D) at the cell centres (isotropic
  D; for diagonal D whenever U/D is a potential, e.g. a separable U).
- drift field b: Δψ = −∫ b_a/D_a along the edge (3-point Gauss–Legendre).
- state-dependent diagonal D(x) (Itô form ∂_a∂_a(D_a p)): the flux acts on q = D p,
  k⁺ = D_a(x_i) B(Δψ)/h², k⁻ = D_a(x_{i+1}) B(−Δψ)/h², Δψ = ΔU/D_a(face) (or the
  integral of −b_a/D_a); the 1-D stationary state is exp(−ψ)/D, as in the continuum.
- constant full D: each off-diagonal D_ab is carried by symmetric jumps to the diagonal
  neighbours (+e_a + s e_b, s = sign D_ab) at rate |D_ab|/(h_a h_b), and the axis
  diffusions are reduced to D'_aa = D_aa − Σ_b |D_ab| h_a/h_b (a Markov generator whose
  continuum limit is Σ_ij D_ij ∂_i∂_j). Monotone iff every D'_aa > 0; in 2-D that holds
  iff |D_ab|/D_bb < h_a/h_b < D_aa/|D_ab| (a range that is never empty for a positive
  definite D): otherwise ``langevin_generator`` raises and names the range. Diagonal
  jumps that would leave a zero-flux box are dropped (no mass crosses the boundary).

Accuracy: second order in h for smooth solutions at moderate cell Péclet number
Pe = |Δψ| (upwind-like, first order, as Pe ≫ 1; the stationary state of gradient drift
with constant isotropic D is exact at any Pe). Rates carry the time unit of the
equation; ``clock_scale`` multiplies them all (``fp.generator`` maps SGD onto steps or
SME time).

The modules: :mod:`~sgdsde.fokker_planck.markov` (the :class:`Generator` type and the
Scharfetter–Gummel rates, :func:`bernoulli`), :mod:`~sgdsde.fokker_planck.langevin`
(the rates from a potential or drift and a diffusion, :func:`langevin_generator`).
"""

from .langevin import Diffusion, generator_from_samples, langevin_generator, sample
from .markov import Generator, bernoulli

__all__ = ["Generator", "langevin_generator", "bernoulli"]
