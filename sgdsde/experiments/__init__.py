"""Paper experiments as functions returning numbers (and figures), used by the command
line, the examples and the docs."""

from . import ou_covariance, output, sgd_vs_sde

__all__ = ["ou_covariance", "output", "sgd_vs_sde"]
