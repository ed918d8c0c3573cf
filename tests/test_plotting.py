"""The one figure style (sgdsde.plotting): fonts, constrained layout, label formatting,
and log-axis tick labels that do not collide."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402

from sgdsde import plotting  # noqa: E402


@pytest.mark.parametrize("value, text", [(-1e-9, "0"), (0.0, "0"), (8.0, "8"), (0.30, "0.3"), (-0.25, "-0.25"),
                                         (1234.5, "1234.5"), (0.004, "0")])
def test_number_is_plain(value, text):
    assert plotting.number(value) == text


def test_style_applies_inside_and_restores_after():
    before = matplotlib.rcParams["legend.fontsize"]

    @plotting.styled
    def draw():
        fig, axes = plotting.figure(1, 2, panel=(4.0, 3.0))
        sizes = (matplotlib.rcParams["legend.fontsize"], matplotlib.rcParams["xtick.labelsize"])
        return fig, axes, sizes

    fig, axes, sizes = draw()
    try:
        assert all(size >= 8 for size in sizes)
        assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
        assert tuple(fig.get_size_inches()) == (8.0, 3.0) and len(axes) == 2
    finally:
        plt.close(fig)
    assert matplotlib.rcParams["legend.fontsize"] == before


@pytest.mark.parametrize("low, high", [(2.8e-3, 1.9e-2), (3e-5, 1.3e-2), (60, 3.5e4), (2.5, 11.0)])
def test_plain_log_ticks_do_not_collide(low, high):
    """Tick labels of a log axis 4.5 cm wide (a third of a figure): plain numbers
    (no ×10^k), at least two, and no two labels overlapping once drawn."""
    with plotting.style():
        fig, ax = plotting.figure(panel=(2.2, 2.0))
        ax.plot([low, high], [0, 1])
        ax.set_xscale("log")
        plotting.plain_log_ticks(ax.xaxis)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        labels = [t for t in ax.get_xticklabels(which="both") if t.get_text() and t.get_visible()
                  and low <= t.get_position()[0] <= high]
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        texts = [t.get_text() for t in labels]
        plt.close(fig)
    assert len(texts) >= 2, texts
    assert not any("times" in t or "^" in t for t in texts), texts
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 <= right.x0, texts
    assert np.all(np.diff([b.x0 for b in boxes]) > 0)
