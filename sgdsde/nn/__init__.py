"""Networks as problems: Flax classifiers on classification data sets.

A Flax network is just another :class:`sgdsde.Problem`: ``classification_problem(model,
dataset)`` gives the per-example cross-entropy over the data set, with the model's
variables dict as params, so ``sgdsde.sgd``/``sgdsde.run`` train it (many replicas and
(η, S) configurations at once) and ``sgdsde.euler_maruyama`` with
``sgdsde.noise.empirical()`` runs its SDE.

- :mod:`~sgdsde.nn.models`: ``MLP``, ``CNN``, ``ResNet`` (ResNet-20 style), ``VGG``;
  batch norm with frozen statistics (per-example losses stay per-example).
- :mod:`~sgdsde.nn.data`: the real 8 × 8 digits built in, generated data sets,
  MNIST / Fashion-MNIST (IDX) and CIFAR-10/100 (binary) from local files, splits,
  subsets, random-label corruption.
- :mod:`~sgdsde.nn.problem`: ``classification_problem``, ``init_params``.
- :mod:`~sgdsde.nn.metrics`: ``accuracy``, ``cross_entropy``, ``evaluate`` and the run
  observers ``accuracy_curve``, ``loss_curve``, ``evaluation_curve``.
"""

from . import data, metrics, models
from .data import Dataset, Splits
from .models import CNN, MLP, VGG, ResNet, num_parameters
from .problem import classification_problem, init_params, recompute_batch_stats

__all__ = [
    "data",
    "metrics",
    "models",
    "Dataset",
    "Splits",
    "MLP",
    "CNN",
    "ResNet",
    "VGG",
    "num_parameters",
    "classification_problem",
    "init_params",
    "recompute_batch_stats",
]
