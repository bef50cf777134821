"""Box and Gaussian filters in numpy (no scipy in QGIS installers)."""
import math

import numpy as np


def box_along_x(a, n):
    """Mean over a window of ``n`` pixels along axis 1 (same shape, edges
    use the pixels that exist)."""
    n = int(n)
    if n <= 1:
        return a
    h, w = a.shape
    c = np.zeros((h, w + 1), np.float64)
    np.cumsum(a, axis=1, out=c[:, 1:])
    lo = np.arange(w) - n // 2
    hi = lo + n
    lo = np.clip(lo, 0, w)
    hi = np.clip(hi, 0, w)
    out = (c[:, hi] - c[:, lo]) / (hi - lo)
    return out.astype(np.float32)


def box_along_y(a, n):
    n = int(n)
    if n <= 1:
        return a
    h, w = a.shape
    c = np.zeros((h + 1, w), np.float64)
    np.cumsum(a, axis=0, out=c[1:, :])
    lo = np.arange(h) - n // 2
    hi = lo + n
    lo = np.clip(lo, 0, h)
    hi = np.clip(hi, 0, h)
    out = (c[hi, :] - c[lo, :]) / (hi - lo)[:, None]
    return out.astype(np.float32)


def gauss_blur(img, sigma):
    """Gaussian blur over the last two axes (H, W) with ``sigma`` pixels,
    edges repeated; leading axes (bands) are blurred each on its own."""
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    lead = ((0, 0),) * (img.ndim - 2)
    out = np.zeros_like(img)
    pad = np.pad(img, lead + ((0, 0), (r, r)), mode="edge")
    for i, kv in enumerate(k):
        out += kv * pad[..., :, i:i + img.shape[-1]]
    pad = np.pad(out, lead + ((r, r), (0, 0)), mode="edge")
    out2 = np.zeros_like(img)
    for i, kv in enumerate(k):
        out2 += kv * pad[..., i:i + img.shape[-2], :]
    return out2
