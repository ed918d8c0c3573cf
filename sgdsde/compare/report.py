"""The printed report of a weak-error comparison: one table per observable."""

from __future__ import annotations

import numpy as np

__all__ = ["format_table"]


def format_table(result, observable: str | None = None) -> str:
    """A printable table per observable of a :class:`~sgdsde.compare.WeakError`: means ±
    stderr, the gap, its z, and the fit (what ``WeakError.table`` returns)."""
    names = [observable] if observable is not None else list(result.observables)
    lines = []
    for name in names:
        lines.append(f"observable {name!r} (clock: SME time; gap = E_SGD − E_SDE; "
                     f"SGD: {result.steppers['sgd']}, SDE: {result.steppers['sde']})")
        head = (f"  {'time':>22} {'eta':>8} {'S':>5} {'E_SGD':>11} {'± se':>9} {'E_SDE':>11} {'± se':>9} "
                f"{'gap':>11} {'± se':>9} {'z':>6}  note")
        lines += [head, "  " + "-" * (len(head) - 2)]
        for j, label in enumerate(result.time_labels):
            for g, eta in enumerate(result.learning_rates):
                a, b, d = result.sgd[name], result.sde[name], result.gap[name]
                notes = []
                if result.diverged["sgd"][g, j] > 0:
                    notes.append(f"SGD diverged {100 * result.diverged['sgd'][g, j]:.1f}%")
                if result.diverged["sde"][g, j] > 0:
                    notes.append(f"SDE diverged {100 * result.diverged['sde'][g, j]:.1f}%")
                if not d["resolved"][g, j] and not notes:
                    notes.append("not resolved")
                lines.append(
                    f"  {label:>22} {eta:8.4g} {int(result.batch_sizes[g]):5d} {a['mean'][g, j]:11.5g} "
                    f"{a['stderr'][g, j]:9.2g} {b['mean'][g, j]:11.5g} {b['stderr'][g, j]:9.2g} "
                    f"{d['value'][g, j]:11.4g} {d['stderr'][g, j]:9.2g} {d['z'][g, j]:6.1f}  {', '.join(notes)}"
                )
            fit = result.order[name][j]
            lines.append(
                f"  {'':>22} order of the gap in η: {fit.slope:.3f} ± {fit.stderr:.3f} "
                f"({100 * fit.confidence:.0f}% CI [{fit.ci[0]:.3f}, {fit.ci[1]:.3f}]), "
                f"{int(np.sum(fit.used))} points, χ²/dof = {fit.chi2:.2f}/{fit.dof}"
                + (f"  [{fit.note}]" if fit.note else "")
            )
        lines.append("")
    return "\n".join(lines)
