"""The railcar network: a small fully convolutional net, trained on
generated scenes (tests/benchmarks/train_network.py, PyTorch) and run here
with numpy alone, so nothing needs installing in QGIS.

Input: brightness at 0.5 m per pixel, plus the same brightness normalised
to its surroundings (robust to haze and exposure). Output at 1 m per pixel:
a heat map that peaks on car centres, the car's axis (as cos 2a, sin 2a),
its length and width, and its type.
"""
import os

import numpy as np

from .errors import Canceled
from .imaging import box_along_x, box_along_y

WEIGHTS = os.path.join(os.path.dirname(__file__), "railcar_net.npz")
INPUT_GSD = 0.5        # metres per input pixel
OUTPUT_STRIDE = 2      # output pixel = 2 input pixels = 1 m
LOCAL_NORM_M = 24.0    # window of the local normalisation, metres

# (name, in channels, out channels, kernel, stride, dilation). 'up' doubles
# the resolution of the previous output and appends the output of c2.
# Context comes from the cheap 2 m layers (dilated: about 30 m around each
# pixel, enough to see a whole car, its neighbours and the gaps); detail from
# the 0.5 m and 1 m layers.
LAYERS = (
    ("c1", 2, 12, 3, 1, 1),      # 0.5 m
    ("c2", 12, 24, 3, 2, 1),     # 1 m
    ("c3", 24, 48, 3, 2, 1),     # 2 m
    ("c4", 48, 48, 3, 1, 2),
    ("c5", 48, 48, 3, 1, 4),
    ("c5b", 48, 48, 3, 1, 8),
    ("up", 72, None, None, None, None),
    ("c6", 72, 24, 1, 1, 1),     # 1 m
    ("c7", 24, 24, 3, 1, 1),
)
TYPES = ("box", "tank", "open", "flat", "covered", "locomotive", "unknown")
HEAD = 1 + 2 + 2 + len(TYPES)     # heat, cos/sin 2a, log length, width, types
LENGTH_REF_M = 15.0
WIDTH_REF_M = 3.0


def reach_m():
    """How far from a pixel the network looks (receptive field radius), in
    metres: windows need at least this much margin for the result of a
    window's core to be the same as on the whole raster."""
    jump, reach = 1, 0
    for name, cin, cout, k, stride, dil in LAYERS:
        if name == "up":
            jump //= 2
            continue
        reach += (k // 2) * dil * jump
        jump *= stride
    return reach * INPUT_GSD + LOCAL_NORM_M / 2


def input_channels(gray):
    """The network's two input channels from brightness (NaN = no data)."""
    valid = np.isfinite(gray)
    g = np.where(valid, gray, np.nanmedian(gray) if valid.any() else 0.5).astype(np.float32)
    n = int(LOCAL_NORM_M / INPUT_GSD) | 1
    mean = box_along_y(box_along_x(g, n), n)
    sq = box_along_y(box_along_x(g * g, n), n)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    local = (g - mean) / (std + 0.05)
    return np.stack([g - 0.5, local * 0.25]).astype(np.float32), valid


def conv(x, w, b, stride=1, dilation=1):
    """'Same' convolution of x (C, H, W) with w (Cout, Cin, k, k), k = 1 or 3."""
    xl = np.ascontiguousarray(x.transpose(1, 2, 0))
    return conv_hwc(xl, w, b, stride, dilation).transpose(2, 0, 1)


def conv_hwc(x, w, b, stride=1, dilation=1):
    """The same on channels-last arrays (H, W, C), the layout the network runs
    in: each of the k*k taps is one matrix product over contiguous channel
    vectors, and memory stays at the size of the output."""
    h, wd, c = x.shape
    k = w.shape[2]
    if k == 1:
        return (x.reshape(-1, c) @ w[:, :, 0, 0].T + b).reshape(h, wd, -1)
    d = dilation
    ho = (h + stride - 1) // stride
    wo = (wd + stride - 1) // stride
    xp = np.pad(x, ((d, d), (d, d), (0, 0)))
    out = np.empty((ho * wo, w.shape[0]), np.float32)
    out[:] = b
    for ky in range(3):
        for kx in range(3):
            patch = xp[ky * d: ky * d + (ho - 1) * stride + 1: stride,
                       kx * d: kx * d + (wo - 1) * stride + 1: stride]
            out += patch.reshape(-1, c) @ w[:, :, ky, kx].T
    return out.reshape(ho, wo, -1)


class RailcarNet:
    def __init__(self, path=WEIGHTS):
        with np.load(path) as data:
            self.p = {k: data[k].astype(np.float32) for k in data.files}

    def __call__(self, x, is_canceled=None):
        """x: (2, H, W) input channels -> (HEAD, ceil(H/2), ceil(W/2)) raw
        outputs at 1 m; output pixel j lies on input pixel 2j.
        ``is_canceled()`` is asked between layers so Cancel is prompt."""
        p = self.p
        feats = {}
        prev = np.ascontiguousarray(x.transpose(1, 2, 0))
        for name, cin, cout, k, stride, dil in LAYERS:
            if name == "up":
                skip = feats["c2"]
                upx = prev.repeat(2, axis=0).repeat(2, axis=1)[:skip.shape[0], :skip.shape[1]]
                prev = np.concatenate([upx, skip], axis=2)
                continue
            if is_canceled is not None and is_canceled():
                raise Canceled()
            prev = conv_hwc(prev, p[name + ".weight"], p[name + ".bias"], stride, dil)
            np.maximum(prev, 0, out=prev)
            feats[name] = prev
        h, w, c = prev.shape
        out = prev.reshape(-1, c) @ p["head.weight"].reshape(HEAD, c).T + p["head.bias"]
        return np.ascontiguousarray(out.reshape(h, w, HEAD).transpose(2, 0, 1))


_cached = None


def default_network():
    global _cached
    if _cached is None:
        _cached = RailcarNet()
    return _cached
