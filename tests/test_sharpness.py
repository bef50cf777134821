"""Soft imagery: the blur of an image's edges is measured, images softer
than the training scenes are sharpened before counting, others are left
as they are."""
import numpy as np
import pytest

from railcar_counter.plugin.core import evaluation, imaging, sharpness
from railcar_counter.plugin.core.detector import count_railcars


def _rectangles(blur, seed=0, size=256):
    """Bright and dark rectangles on grey, blurred by ``blur`` pixels."""
    rng = np.random.default_rng(seed)
    a = np.full((size, size), 0.5, np.float32)
    for _ in range(40):
        x, y = rng.integers(0, size - 40, 2)
        w, h = rng.integers(6, 40, 2)
        a[y:y + h, x:x + w] = rng.choice([0.1, 0.9])
    return imaging.gauss_blur(a, blur) if blur > 0 else a


def _patches(blur):
    """Four patches: edges enough for a measure (a 512 x 512 px image)."""
    return [_rectangles(blur, seed=k) for k in range(4)]


@pytest.mark.parametrize("blur", [0.5, 1.0, 1.6, 2.2])
def test_edge_blur_is_measured(blur):
    """Step edges of blur s read sqrt(s^2 + 0.76^2): the pixel difference
    spreads them too."""
    est = sharpness.edge_blur_px(_patches(blur))
    assert est == pytest.approx(np.hypot(blur, 0.76), rel=0.1)


def test_softer_images_measure_softer_and_nodata_is_ignored():
    sharp, soft = _patches(0.9), _patches(1.5)
    holed = [p.copy() for p in soft]
    for p in holed:
        p[:, :60] = np.nan          # the edge of no data is not an image edge
    assert sharpness.edge_blur_px(sharp) < sharpness.edge_blur_px(soft)
    assert sharpness.edge_blur_px(holed) == pytest.approx(sharpness.edge_blur_px(soft), rel=0.15)


def test_images_without_enough_edges_are_not_measured():
    assert sharpness.edge_blur_px([np.full((256, 256), 0.5, np.float32)] * 4) is None
    assert sharpness.edge_blur_px([np.full((256, 256), np.nan, np.float32)] * 4) is None
    assert sharpness.edge_blur_px(_patches(1.5)[:2]) is None       # a small clip


def test_only_images_softer_than_the_training_scenes_are_sharpened():
    assert sharpness.sharpening(None, 0.5, 0.5)[1] == 0.0
    assert sharpness.sharpening(0.7, 0.5, 0.5)[1] == 0.0
    mild = sharpness.sharpening(0.95, 0.5, 0.5)[1]
    strong = sharpness.sharpening(1.3, 0.5, 0.5)[1]
    assert 0 < mild < strong <= sharpness.MAX_AMOUNT
    # finer pixels are averaged down to the working grid, which hides their blur
    assert sharpness.sharpening(1.3, 0.3, 0.5)[1] < strong
    # coarser pixels: the mask works at the scale of one native pixel
    assert sharpness.sharpening(1.3, 1.0, 0.5)[0] == pytest.approx(2.0)


def test_unsharp_keeps_nodata_and_leaves_sharp_images_alone():
    a = _rectangles(1.5)
    assert sharpness.unsharp(a, 1.0, 0.0) is a
    a[:10] = np.nan
    out = sharpness.unsharp(a, 1.0, 1.0)
    assert np.isnan(out[:10]).all() and np.isfinite(out[10:]).all()
    # steeper edges: the largest gradient grows
    assert np.nanmax(np.abs(np.diff(out[20:], axis=1))) > np.nanmax(np.abs(np.diff(a[20:], axis=1)))


def test_soft_imagery_is_sharpened_and_counted_closer_to_the_truth(soft_yard, monkeypatch):
    path, soft, truth = soft_yard
    as_generated = count_railcars(path)
    assert as_generated.blur_px < sharpness.REFERENCE_BLUR_PX
    assert as_generated.sharpened == 0.0

    sharpened = count_railcars(soft)
    assert sharpened.blur_px > as_generated.blur_px + 0.3
    assert sharpened.sharpened > 0.3
    monkeypatch.setattr(sharpness, "GAIN", 0.0)
    left_soft = count_railcars(soft)
    assert left_soft.sharpened == 0.0
    f1_sharpened = evaluation.match(sharpened.detections, truth).f1
    f1_left = evaluation.match(left_soft.detections, truth).f1
    assert f1_sharpened > f1_left + 0.02, (f1_sharpened, f1_left)
