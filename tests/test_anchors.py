"""Tests for the dimension-cluster k-means (yolo9000.anchors)."""

import pytest
import torch

from yolo9000.anchors import (
    anchor_sweep,
    avg_iou,
    format_anchors,
    kmeans_anchors,
    shape_iou,
    to_grid_units,
)


def test_shape_iou_hand_computed() -> None:
    wh = torch.tensor([[2.0, 2.0], [1.0, 4.0], [3.0, 1.0]], dtype=torch.float64)
    cents = torch.tensor([[1.0, 4.0], [2.0, 2.0]], dtype=torch.float64)
    iou = shape_iou(wh, cents)
    # (2,2) vs (1,4): inter = 1*2 = 2, union = 4 + 4 - 2 = 6 -> 1/3
    # (3,1) vs (1,4): inter = 1*1 = 1, union = 3 + 4 - 1 = 6 -> 1/6
    # (3,1) vs (2,2): inter = 2*1 = 2, union = 3 + 4 - 2 = 5 -> 2/5
    expected = torch.tensor([[1 / 3, 1.0], [1.0, 1 / 3], [1 / 6, 2 / 5]], dtype=torch.float64)
    assert iou.shape == (3, 2)
    torch.testing.assert_close(iou, expected, rtol=0, atol=1e-12)


def test_avg_iou_hand_computed() -> None:
    wh = torch.tensor([[2.0, 2.0], [3.0, 1.0]])
    anchors = torch.tensor([[1.0, 4.0], [2.0, 2.0]])
    assert avg_iou(wh, anchors) == pytest.approx((1.0 + 2 / 5) / 2, abs=1e-12)


def _two_clusters() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    a = torch.tensor([0.05, 0.08], dtype=torch.float64) + 0.005 * torch.rand(40, 2, generator=g, dtype=torch.float64)
    b = torch.tensor([0.60, 0.30], dtype=torch.float64) + 0.02 * torch.rand(60, 2, generator=g, dtype=torch.float64)
    return a, b


@pytest.mark.parametrize("metric", ["iou", "sse"])
@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_two_separated_clusters_recovered(metric: str, init: str) -> None:
    a, b = _two_clusters()
    wh = torch.cat([b, a])  # larger cluster first: output must still be sorted by area
    res = kmeans_anchors(wh, 2, metric=metric, init=init, seed=3)
    assert res.anchors.shape == (2, 2)
    torch.testing.assert_close(res.anchors[0], a.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(res.anchors[1], b.mean(0), rtol=0, atol=1e-12)
    expected = torch.cat([torch.ones(60, dtype=torch.long), torch.zeros(40, dtype=torch.long)])
    assert torch.equal(res.assignments, expected)
    assert res.avg_iou == pytest.approx(avg_iou(wh, res.anchors), abs=1e-12)


def test_median_update_recovers_cluster_medians() -> None:
    a, b = _two_clusters()
    res = kmeans_anchors(torch.cat([a, b]), 2, update="median")
    torch.testing.assert_close(res.anchors[0], a.median(0).values, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.anchors[1], b.median(0).values, rtol=0, atol=1e-12)


def test_k1_mean_is_the_mean_box() -> None:
    wh = torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    res = kmeans_anchors(wh, 1)
    torch.testing.assert_close(res.anchors[0], wh.mean(0), rtol=0, atol=1e-12)
    assert torch.all(res.assignments == 0)


def test_avg_iou_monotone_in_k_with_restarts() -> None:
    g = torch.Generator().manual_seed(0)
    wh = torch.rand(600, 2, generator=g, dtype=torch.float64) * 0.9 + 0.02
    results = anchor_sweep(wh, range(1, 10), metric="iou", seed=0, restarts=3)
    assert [r.k for r in results] == list(range(1, 10))
    ious = [r.avg_iou for r in results]
    assert all(b >= a - 1e-12 for a, b in zip(ious[:-1], ious[1:], strict=True)), ious
    assert ious[-1] > ious[0] + 0.2
    for r in results:
        areas = r.anchors[:, 0] * r.anchors[:, 1]
        assert torch.all(areas[1:] >= areas[:-1])


def test_iou_metric_beats_sse_on_skewed_set() -> None:
    # Many small boxes and a few large ones: squared error is dominated by the large boxes, so SSE k-means
    # spends its centroids there and the many small boxes get poor IoU.
    g = torch.Generator().manual_seed(0)
    small = torch.rand(900, 2, generator=g, dtype=torch.float64) * 0.08 + 0.02
    large = torch.rand(100, 2, generator=g, dtype=torch.float64) * 0.4 + 0.5
    wh = torch.cat([small, large])
    for k in (3, 5):
        iou_res = kmeans_anchors(wh, k, metric="iou", restarts=3)
        sse_res = kmeans_anchors(wh, k, metric="sse", restarts=3)
        assert iou_res.avg_iou > sse_res.avg_iou + 0.05


def test_deterministic_with_seed() -> None:
    wh = torch.rand(300, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) + 0.01
    r1 = kmeans_anchors(wh, 5, seed=7, init="random")
    r2 = kmeans_anchors(wh, 5, seed=7, init="random")
    assert torch.equal(r1.anchors, r2.anchors)
    assert torch.equal(r1.assignments, r2.assignments)
    s1 = anchor_sweep(wh, range(1, 5), seed=2)
    s2 = anchor_sweep(wh, range(1, 5), seed=2)
    assert all(torch.equal(x.anchors, y.anchors) for x, y in zip(s1, s2, strict=True))


def test_numpy_input_and_float32() -> None:
    wh = torch.rand(100, 2, generator=torch.Generator().manual_seed(2)) + 0.05
    r1 = kmeans_anchors(wh.numpy(), 3)
    r2 = kmeans_anchors(wh, 3)
    assert torch.equal(r1.anchors, r2.anchors)


def test_errors() -> None:
    wh = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 1.0]])
    with pytest.raises(ValueError, match="distinct"):
        kmeans_anchors(wh, 3)  # only 2 distinct shapes
    with pytest.raises(ValueError, match="distinct"):
        kmeans_anchors(wh, 0)
    with pytest.raises(ValueError, match="zero"):
        kmeans_anchors(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="zero"):
        avg_iou(torch.tensor([[1.0, -2.0]]), torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        kmeans_anchors(torch.ones(4, 3), 1)
    with pytest.raises(ValueError, match="metric"):
        kmeans_anchors(wh, 1, metric="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init"):
        kmeans_anchors(wh, 1, init="bogus")  # type: ignore[arg-type]


def test_grid_units_and_format() -> None:
    anchors = torch.tensor([[0.1, 0.2], [0.5, 0.25]])
    grid = to_grid_units(anchors, 13)
    torch.testing.assert_close(grid, torch.tensor([[1.3, 2.6], [6.5, 3.25]]))
    torch.testing.assert_close(to_grid_units(anchors, (10, 20)), torch.tensor([[1.0, 4.0], [5.0, 5.0]]))
    assert format_anchors(torch.tensor([[1.3221, 1.73145], [3.19275, 4.00944]])) == "1.32,1.73, 3.19,4.01"
    assert format_anchors(torch.tensor([[1.0, 2.0]]), decimals=3) == "1.000,2.000"


def test_max_boxes_clusters_a_sample_and_refines_on_all_boxes() -> None:
    """More boxes than ``max_boxes``: the restarts run on a sample, and Lloyd's iterations on every box refine the
    result: its average IoU over all the boxes is above the sample's own anchors' and that of a full run to 0.002;
    at or under ``max_boxes`` the result is the full run's exactly (small datasets, BCCD, VOC: unchanged)."""
    g = torch.Generator().manual_seed(0)
    wh = (torch.randn(6000, 2, generator=g, dtype=torch.float64) * 0.6).exp() * torch.tensor([0.08, 0.12])
    full = kmeans_anchors(wh, 5, restarts=3, seed=2)
    fast = kmeans_anchors(wh, 5, restarts=3, seed=2, max_boxes=800)
    pick = torch.randperm(6000, generator=torch.Generator().manual_seed(2))[:800]  # the sample it draws
    sample = kmeans_anchors(wh[pick], 5, restarts=3, seed=2)
    assert fast.avg_iou > avg_iou(wh, sample.anchors) + 1e-4  # refined on all the boxes
    assert fast.assignments.shape == (6000,) and abs(fast.avg_iou - full.avg_iou) < 2e-3
    same = kmeans_anchors(wh, 5, restarts=3, seed=2, max_boxes=6000)
    assert torch.equal(same.anchors, full.anchors) and same.avg_iou == full.avg_iou
