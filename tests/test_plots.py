"""Figures (cotj.analysis.plots): each returns a Figure that shows the data it was given."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import mean_dna, needs_extra

pytestmark = needs_extra("plot")

import cotj  # noqa: E402
from cotj.analysis import plots  # noqa: E402
from cotj.analysis.diagnose import diagnose  # noqa: E402


def _rendered(fig, tmp_path, name="f.png"):
    """Pixels (H, W, 4) of the saved PNG."""
    from matplotlib.image import imread

    path = tmp_path / name
    fig.savefig(path, dpi=50)
    return imread(path)


def test_dna_curves_draw_every_row_on_a_log_axis(tmp_path):
    d = np.stack([mean_dna("qwenimage"), mean_dna("zimageturbo")])
    fig = plots.dna_curves(d, ["Qwen-Image", "Z-Image-Turbo"])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["Qwen-Image", "Z-Image-Turbo"]
    np.testing.assert_allclose(lines[1].get_ydata(), d[1])
    np.testing.assert_allclose(lines[0].get_xdata(), cotj.default_grid(100))
    assert ax.get_xlim() == (1.0, 0.0)  # sampling order: noise on the left
    assert _rendered(fig, tmp_path).std() > 0.05


def test_cost_heatmap_draws_the_plan_through_its_jump_cells():
    d = mean_dna("qwenimage")
    p = cotj.plan(d, 6)
    fig = plots.cost_heatmap(cotj.cost_matrix(d), p.steps)
    ax = fig.axes[0]
    mesh = ax.collections[0]
    assert mesh.norm.vmin > 0 and type(mesh.norm).__name__ == "LogNorm"
    jumps = ax.collections[-1].get_offsets()
    np.testing.assert_allclose(jumps, np.column_stack([p.levels[:-1], p.levels[1:]]))
    stair = ax.get_lines()[-1]
    np.testing.assert_allclose(stair.get_xdata(), np.repeat(p.levels, 2))  # along the diagonal, level by level
    assert stair.get_ydata()[-1] < 0.01  # the final jump goes down to t = 0


def test_ratio_curve_marks_tau_choice_and_knee():
    d = diagnose(mean_dna("qwenimage"), max_steps=50)
    fig = plots.ratio_curve(d.ratio, tau=d.tau, chosen=d.plan.budget, knee=d.knee)
    top, bottom = fig.axes
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert any(f"K = {d.plan.budget}" in s for s in labels) and any(f"K = {d.knee}" in s for s in labels)
    assert bottom.get_yscale() == "log"
    np.testing.assert_allclose(top.get_lines()[0].get_ydata(), d.ratio)
    with pytest.raises(ValueError, match="chosen"):
        plots.ratio_curve(d.ratio, chosen=51)


def test_gain_bars_colour_exactly_the_negative_gains():
    g = cotj.gains(mean_dna("zimageturbo"))
    fig = plots.gain_bars(g)
    ax = fig.axes[0]
    colours = [tuple(np.round(b.get_facecolor()[:3], 3)) for b in ax.patches]
    red = tuple(np.round(np.array([0xD6, 0x27, 0x28]) / 255, 3))
    assert sum(c == red for c in colours) == int((g < 0).sum()) == 2
    assert len(ax.patches) == g.size
    texts = [t.get_text() for t in ax.texts]
    assert any("t = 1.00" in s for s in texts) and any("t = 0.99" in s for s in texts)


def test_schedule_comparison_one_row_per_schedule():
    named = {"planned": np.array([1.0, 0.8, 0.3]), "uniform": np.array([1.0, 2 / 3, 1 / 3])}
    fig = plots.schedule_comparison(named)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["planned", "uniform"]
    np.testing.assert_allclose(ax.collections[1].get_offsets()[:, 0], named["uniform"])
    with pytest.raises(ValueError, match="at least one"):
        plots.schedule_comparison({})


def test_image_row_and_signature_figures(tmp_path):
    imgs = [np.zeros((4, 4, 3)), np.ones((4, 4, 3))]
    fig = plots.image_row(imgs, ["black", "white"])
    assert [ax.get_title() for ax in fig.axes] == ["black", "white"]
    lv = np.linspace(0.9, 0.1, 9)
    sig = plots.signature_vs_dna(lv, np.exp(lv), lv**2, correlation=0.5)
    assert "0.50" in sig.axes[0].get_title()
    with pytest.raises(ValueError, match="titles"):
        plots.image_row(imgs, ["one"])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: plots.dna_curves(np.ones(10), ["a", "b"]), "labels"),
        (lambda: plots.dna_curves(np.array(["x", "y"])), "numeric"),
        (lambda: plots.cost_heatmap(np.ones((3, 4))), "square"),
        (lambda: plots.cost_heatmap(np.full((3, 3), np.inf)), "positive"),
        (lambda: plots.cost_heatmap(np.ones((3, 3)), np.array([5])), "grid indices"),
        (lambda: plots.gain_bars(np.ones(9), grid=np.linspace(0.1, 1, 5)), "grid"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
