"""Small numpy image operations the detector needs (no scipy in QGIS
installers): box filters, shifts, bilinear resampling along a rotated frame."""
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


def shift_y(a, k):
    """Row ``v`` of the result holds row ``v + k`` of ``a`` (edge rows repeat)."""
    k = int(k)
    if k == 0:
        return a
    h = a.shape[0]
    idx = np.clip(np.arange(h) + k, 0, h - 1)
    return a[idx, :]


def block_sum(a, b):
    """Sum over non-overlapping b x b blocks (the ragged border is dropped)."""
    h, w = a.shape
    hb, wb = h // b, w // b
    return a[:hb * b, :wb * b].reshape(hb, b, wb, b).sum(axis=(1, 3))


class RotatedFrame:
    """A frame whose x axis runs along direction ``theta`` (radians, in the
    image's pixel frame: x right, y down) and covers the whole image.

    ``sample(img)`` resamples the image into the frame (bilinear);
    ``to_image(u, v)`` maps frame coordinates back to image pixels.
    """

    def __init__(self, shape, theta):
        h, w = shape
        self.theta = theta
        c, s = math.cos(theta), math.sin(theta)
        self.dir = (c, s)            # along the frame's x (u)
        self.perp = (-s, c)          # along the frame's y (v)
        self.cx, self.cy = (w - 1) / 2.0, (h - 1) / 2.0
        # half extents of the rotated bounding box
        hu = abs(c) * w / 2.0 + abs(s) * h / 2.0
        hv = abs(s) * w / 2.0 + abs(c) * h / 2.0
        self.W = int(math.ceil(2 * hu))
        self.H = int(math.ceil(2 * hv))
        self.u0 = -(self.W - 1) / 2.0
        self.v0 = -(self.H - 1) / 2.0

    def to_image(self, u, v):
        """Frame pixel (u, v) -> image pixel (x, y); arrays or scalars."""
        uu = np.asarray(u, np.float64) + self.u0
        vv = np.asarray(v, np.float64) + self.v0
        x = self.cx + uu * self.dir[0] + vv * self.perp[0]
        y = self.cy + uu * self.dir[1] + vv * self.perp[1]
        return x, y

    def sample(self, img, fill=np.nan):
        h, w = img.shape
        u = np.arange(self.W, dtype=np.float32) + np.float32(self.u0)
        v = np.arange(self.H, dtype=np.float32) + np.float32(self.v0)
        x = (np.float32(self.cx) + v[:, None] * np.float32(self.perp[0])) + u[None, :] * np.float32(self.dir[0])
        y = (np.float32(self.cy) + v[:, None] * np.float32(self.perp[1])) + u[None, :] * np.float32(self.dir[1])
        return bilinear(img, x, y, fill)


def bilinear(img, x, y, fill=np.nan):
    """Sample ``img`` at float pixel positions (x, y); outside -> ``fill``."""
    h, w = img.shape
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    xc = np.clip(x, 0, w - 1.001)
    yc = np.clip(y, 0, h - 1.001)
    x0 = xc.astype(np.int32)
    y0 = yc.astype(np.int32)
    fx = (xc - x0).astype(np.float32)
    fy = (yc - y0).astype(np.float32)
    flat = img.ravel()
    i00 = y0 * w + x0
    a = flat[i00]
    b = flat[i00 + 1]
    c = flat[i00 + w]
    d = flat[i00 + w + 1]
    top = a + (b - a) * fx
    bot = c + (d - c) * fx
    out = top + (bot - top) * fy
    out[~inside] = fill
    return out
