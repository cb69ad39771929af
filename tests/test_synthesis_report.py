"""Report sections 60 (feature visualization) and 65 (dataset exemplars) on a small subject."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from tests.section_blocks import blocks_of
from torchloupe.reporting.base import Figure, NotApplicable, Subject, Table, order_of, registered


def _subject(dataset=True):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 6, 3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    x = torch.rand(4, 3, 16, 16)
    data = TensorDataset(torch.rand(40, 3, 16, 16), torch.zeros(40, dtype=torch.long)) if dataset else None
    return Subject(name="tiny", model=model, inputs=x, dataset=data)


def _sections():
    return {s.key: s for s in registered()}


def test_sections_registered_in_order():
    s = _sections()
    assert s["feature_vis"].order == order_of("feature_vis") and s["exemplars"].order == order_of("exemplars")
    assert s["feature_vis"].order < s["exemplars"].order


def test_feature_vis_section_shows_images_table_and_curves():
    blocks = blocks_of(_sections()["feature_vis"].build(_subject(), {"quick": True, "seed": 0}))
    assert [type(b) for b in blocks[:3]] == [Figure, Table, Figure]
    table = blocks[1]
    assert [r[0] for r in table.rows] == ["2:0", "2:1", "2:2"]  # last Conv2d, first 3 channels (quick)
    assert all(r[4] in ("ok", "FAILED") for r in table.rows)
    assert all(r[3] != "" for r in table.rows)  # dataset top-1 shown: exemplars were computed


def test_exemplars_section_and_not_applicable_without_data():
    sec = _sections()["exemplars"]
    blocks = blocks_of(sec.build(_subject(), {"quick": True, "seed": 0}))
    assert isinstance(blocks[0], Figure) and "top-5 of the first 40 samples" in blocks[0].caption
    na = sec.build(_subject(dataset=False), {"quick": True})
    assert isinstance(na, NotApplicable) and "dataset" in na.reason and "loupe exemplars --data" in na.reason


def test_exemplars_drawn_once_when_feature_vis_draws_them():
    # With the feature visualization in the same report, its figure already holds the crops: the
    # exemplars section lists the samples behind them instead of drawing the same grid again.
    from torchloupe.reporting import Table, Text

    subject = _subject()
    drawn = blocks_of(_sections()["exemplars"].build(subject, {"quick": True, "seed": 0}))
    listed = blocks_of(_sections()["exemplars"].build(subject, {"quick": True, "seed": 0,
                                                                "report_sections": ("feature_vis", "exemplars")}))
    assert isinstance(listed[0], Text) and isinstance(listed[1], Table)
    assert not any(isinstance(b, Figure) for b in listed)
    from torchloupe.reporting.sections.feature_vis import pick_layer

    layer = pick_layer(subject)[0]
    ex = subject.shared.exemplars(layer, [0, 1, 2], 128)  # what both sections read (computed once, kept)
    assert listed[1].rows[0][0] == f"{layer}:0" and len(listed[1].rows) == 3
    assert listed[1].rows[0][1] == ", ".join(str(int(i)) for i in ex.indices[0])
    assert isinstance(drawn[0], Figure)


class _RunningSum(nn.Module):
    """(B, T, 1) -> (B, T): output t is the sum of inputs 0..t (weights set, so the truth is known)."""

    def __init__(self):
        super().__init__()
        self.step = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.step.weight.fill_(1.0)
        self.total = nn.Identity()

    def forward(self, x):
        return self.total(self.step(x).squeeze(-1).cumsum(1))


def test_feature_vis_of_a_sequence_model_draws_bars_over_steps():
    # Maximizing output t of a running sum raises inputs 0..t only: the bars must show that pattern.
    subject = Subject(name="running sum", model=_RunningSum().eval(), inputs=torch.rand(4, 6, 1), layers=["total"])
    blocks = blocks_of(_sections()["feature_vis"].build(subject, {"quick": True, "seed": 0}))
    fig = blocks[0]
    assert "the bars are its value at each step" in fig.caption
    panels = [ax for ax in fig.figure.axes if ax.patches]
    assert len(panels) == 3 and all(ax.get_xlabel() == "step" for ax in panels)
    for t, ax in enumerate(panels):  # unit "total:t"
        heights = torch.tensor([p.get_height() for p in ax.patches])
        assert heights.shape == (6,)
        assert heights[: t + 1].min() > heights[t + 1 :].max() + 0.1


def test_objective_curves_legend_keeps_names_matplotlib_would_hide():
    # matplotlib leaves labels starting with "_" out of legends; EfficientNet's layers are named so.
    from types import SimpleNamespace

    from torchloupe.render.synthesis import curves_figure

    result = SimpleNamespace(objective_curve=torch.rand(5, 2), names=["_conv_head:0", "_conv_head:1"])
    fig = curves_figure(result)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["_conv_head:0", "_conv_head:1"]



class _MeanOfSteps(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)).mean(1))


def test_feature_vis_of_multi_feature_sequences_draws_and_says_heat_maps():
    subject = Subject(name="steps", model=_MeanOfSteps().eval(), inputs=torch.rand(4, 12, 5))
    fig = blocks_of(_sections()["feature_vis"].build(subject, {"quick": True, "seed": 0}))[0]
    assert fig.caption.endswith("a features x steps heat map (red > 0 > blue)")
    panels = [ax for ax in fig.figure.axes if ax.images]
    assert panels and all(ax.images[0].get_array().shape == (5, 12) for ax in panels)


class _FixedSize(nn.Module):
    """Takes 20 x 20 images only (like a ViT's patch grid or a Flatten before a Linear)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 20 * 20, 3)

    def forward(self, x):
        if tuple(x.shape[-2:]) != (20, 20):  # as torchvision's ViT checks its input, before any layer
            raise ValueError(f"expected 20 x 20 images, got {tuple(x.shape[-2:])}")
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_feature_vis_keeps_the_input_size_a_model_needs():
    torch.manual_seed(0)
    subject = Subject(name="fixed", model=_FixedSize().eval(), inputs=torch.rand(2, 3, 20, 20), layers=["conv"])
    # 20 px is below the section's 64 px optimization size: only the transforms must keep the size here
    blocks = blocks_of(_sections()["feature_vis"].build(subject, {"quick": True, "seed": 0}))
    assert [type(b) for b in blocks[:3]] == [Figure, Table, Figure]  # ran: no size error
    assert all(r[4] in ("ok", "FAILED") for r in blocks[1].rows)


def test_standard_resized_transforms_give_back_the_input_size():
    from torchloupe.synthesis import transforms as T

    x = torch.rand(2, 3, 20, 20)
    grown = T.resolve("standard", (3, 20, 20), 0.5)(x, torch.Generator().manual_seed(0))
    kept = T.resolve("standard-resized", (3, 20, 20), 0.5)(x, torch.Generator().manual_seed(0))
    assert grown.shape[-2:] != (20, 20) and kept.shape == (2, 3, 20, 20)
    assert torch.allclose(kept, F.interpolate(grown, size=(20, 20), mode="bilinear", align_corners=False))
