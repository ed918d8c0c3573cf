"""Critical points of a loss: minima from many starts (:mod:`~sgdsde.landscape.minima`)
and index-1 saddles between them (:mod:`~sgdsde.landscape.saddles`), on the Newton kernels
of :mod:`~sgdsde.landscape._newton`. This module gathers the two under one name."""

from .minima import Minima, critical_point, find_minima, minima_at
from .saddles import Saddles, find_saddles

__all__ = ["Minima", "Saddles", "find_minima", "find_saddles", "critical_point", "minima_at"]
