"""How soft an image is, and the sharpening that brings it back to what the
network was trained on. Pure numpy.

Many satellite products are sold at a finer pixel size than their optics
resolve (a 0.7-0.8 m sensor delivered at 0.5 m, pansharpened colour): edges
spread over more pixels than in the training scenes, heat peaks between
coupled cars fade, and counts drop (bench_robustness.py: 15 % fewer cars at
0.7-1 m on imagery 1.6 times softer than its pixels). The counter measures
the blur of the image's strongest edges once per raster and, where it is
above the training range, applies an unsharp mask before the network.
Imagery as sharp as the training scenes is left exactly as it is.
"""
import numpy as np

from .imaging import box_along_x, box_along_y, gauss_blur

# The training scenes read 0.5-0.78 px (native pixels, edge_blur_px);
# spread beyond REFERENCE_BLUR_PX is made up for.
REFERENCE_BLUR_PX = 0.75
# Unsharp amount per px^2 of excess blur variance, and its cap. Chosen on the
# tuning suite made softer (x1.6 and x2); the held-out suite reports it.
GAIN = 2.0
MAX_AMOUNT = 1.5
REBLUR_PX = 1.0             # the known blur added to measure the unknown one
PATCH_PX = 256
MAX_PATCHES = 16
MIN_EDGES = 50
# Clips smaller than this (about 400 x 400 px of valid pixels) hold too few
# structures for a reliable measure: they are left as they are.
MIN_PIXELS = 150000


def _gradient(a):
    gx = np.zeros_like(a)
    gy = np.zeros_like(a)
    gx[:, 1:-1] = a[:, 2:] - a[:, :-2]
    gy[1:-1] = a[2:] - a[:-2]
    return np.hypot(gx, gy)


def _filled(gray, invalid):
    """float32 brightness with no-data pixels set to the median of the
    others: filters need numbers everywhere."""
    if not invalid.any():
        return gray.astype(np.float32, copy=False)
    return np.where(invalid, np.nanmedian(gray), gray).astype(np.float32)


def _edge_samples(gray):
    """(gradient, gradient after re-blurring) at the gradient's local maxima
    of a patch, and all its gradient values (for the global cut-off)."""
    valid = np.isfinite(gray)
    if valid.mean() < 0.5 or min(gray.shape) < 16:
        return None
    g = _filled(gray, ~valid)
    m0 = _gradient(g)
    m1 = _gradient(gauss_blur(g, REBLUR_PX))
    # away from the patch border and from nodata, whose filled values make edges
    inner = box_along_y(box_along_x(valid.astype(np.float32), 9), 9) > 0.999
    inner[:4], inner[-4:], inner[:, :4], inner[:, -4:] = False, False, False, False
    peak = m0.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            peak = np.maximum(peak, np.roll(np.roll(m0, dy, 0), dx, 1))
    sel = inner & (m0 >= peak) & (m0 > 0)
    return m0[sel], m1[sel], m0[inner]


def edge_blur_px(patches):
    """How far the strongest edges in a list of brightness patches (NaN =
    no data) are spread, in pixels, or None without enough edges.

    Re-blurring an edge of Gaussian blur s by a known r lowers its gradient
    peak by s / sqrt(s^2 + r^2); the median of that ratio over the top 5 %
    of edges gives s. A relative measure, compared only with what the
    training scenes read: the pixel difference adds its own spread (a step
    edge of blur s reads sqrt(s^2 + 0.76^2)), and thin features such as
    the gaps between cars read less. Noise makes images read sharper, never
    softer, so noisy images are not sharpened."""
    samples = [s for s in (_edge_samples(p) for p in patches) if s is not None]
    if not samples:
        return None
    everything = np.concatenate([s[2] for s in samples])
    if everything.size < MIN_PIXELS:
        return None
    cut = np.percentile(everything, 95)
    m0 = np.concatenate([s[0] for s in samples])
    m1 = np.concatenate([s[1] for s in samples])
    keep = m0 >= cut
    if keep.sum() < MIN_EDGES:
        return None
    rho = float(np.median(np.clip(m1[keep] / m0[keep], 0.05, 0.99)))
    return REBLUR_PX * rho / np.sqrt(1.0 - rho * rho)


def patch_windows(bounds, patch=PATCH_PX, most=MAX_PATCHES):
    """Up to ``most`` (xoff, yoff, size_x, size_y) patches spread evenly over
    ``bounds`` = (col0, row0, col1, row1) in native pixels."""
    c0, r0, c1, r1 = bounds
    w, h = c1 - c0, r1 - r0
    pw, ph = min(patch, w), min(patch, h)
    side = int(np.sqrt(most))
    nx = max(1, min(side, -(-w // max(1, pw))))      # small rasters: covered whole
    ny = max(1, min(side, -(-h // max(1, ph))))
    out = []
    for j in range(ny):
        for i in range(nx):
            x = c0 + int((i + 0.5) * w / nx - pw / 2)
            y = r0 + int((j + 0.5) * h / ny - ph / 2)
            out.append((max(c0, min(x, c1 - pw)), max(r0, min(y, r1 - ph)), pw, ph))
    return out


def sharpening(blur_px, gsd_m, work_gsd_m):
    """(sigma, amount) of the unsharp mask for brightness resampled from
    ``gsd_m`` to ``work_gsd_m`` pixels; amount 0 = leave the image as it is.
    The mask acts at the scale of one native pixel and removes, to first
    order, the blur variance above the reference (amount * sigma^2)."""
    if blur_px is None or blur_px <= REFERENCE_BLUR_PX:
        return 1.0, 0.0
    scale = gsd_m / work_gsd_m                      # working pixels per native pixel
    sigma = max(1.0, scale)
    excess = (blur_px ** 2 - REFERENCE_BLUR_PX ** 2) * scale ** 2    # working px^2
    return sigma, float(min(MAX_AMOUNT, GAIN * excess / sigma ** 2))


def unsharp(gray, sigma, amount):
    """``gray + amount * (gray - blurred gray)``; NaN (no data) stays NaN."""
    if amount <= 0:
        return gray                       # most images: no work on the hot path
    nan = ~np.isfinite(gray)
    if nan.all():
        return gray
    g = _filled(gray, nan)
    out = g + np.float32(amount) * (g - gauss_blur(g, sigma))
    out[nan] = np.nan
    return out
