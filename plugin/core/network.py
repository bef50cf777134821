"""The railcar network: a small fully convolutional net, trained on
generated scenes (tests/benchmarks/train_network.py, PyTorch) and run here
with numpy alone, so nothing needs installing in QGIS.

Input: brightness at 0.5 m per pixel, plus the same brightness normalised
to its surroundings (robust to haze and exposure). Output at 1 m per pixel:
a heat map that peaks on car centres, the car's axis (as cos 2a, sin 2a),
its length and width, and its type (which only helps it learn: the
verifier, verifier.py, names the types).
"""
import os

import numpy as np

from .errors import Canceled
from .imaging import box_along_x, box_along_y

WEIGHTS = os.path.join(os.path.dirname(__file__), "railcar_net.npz")
# The same network fine-tuned with quiet yards as well, for imagery coarser
# than cars.COARSE_MODEL_GSD_M (see there).
COARSE_WEIGHTS = os.path.join(os.path.dirname(__file__), "railcar_net_coarse.npz")
INPUT_GSD = 0.5        # metres per input pixel
OUTPUT_STRIDE = 2      # output pixel = 2 input pixels = 1 m
LOCAL_NORM_M = 24.0    # window of the local normalisation, metres

# (name, in channels, out channels, kernel, stride, dilation). 'up' doubles
# the resolution of the previous output and appends the output of c2.
# Context comes from the cheap 2 m layers (dilated: about 30 m around each
# pixel, enough to see a whole car, its neighbours and the gaps); detail from
# the 0.5 m and 1 m layers.
LAYERS = (
    ("c1", 2, 16, 3, 1, 1),      # 0.5 m
    ("c2", 16, 32, 3, 2, 1),     # 1 m
    ("c3", 32, 48, 3, 2, 1),     # 2 m
    ("c4", 48, 48, 3, 1, 2),
    ("c5", 48, 48, 3, 1, 4),
    ("c5b", 48, 48, 3, 1, 8),
    ("up", 80, None, None, None, None),
    ("c6", 80, 32, 1, 1, 1),     # 1 m
    ("c7", 32, 32, 3, 1, 1),
)
TYPES = ("box", "tank", "open", "flat", "covered", "locomotive", "unknown")
HEAD = 1 + 2 + 2 + len(TYPES)     # heat, cos/sin 2a, log length, width, types
LENGTH_REF_M = 15.0
WIDTH_REF_M = 3.0


def conv_reach_px():
    """How far from a pixel the convolutions look (receptive field radius),
    in input pixels."""
    jump, reach = 1, 0
    for name, cin, cout, k, stride, dil in LAYERS:
        if name == "up":
            jump //= 2
            continue
        reach += (k // 2) * dil * jump
        jump *= stride
    return reach


def reach_m():
    """How far from a pixel the network looks, its input's local
    normalisation included, in metres: windows need at least this much
    margin for the result of a window's core to be the same as on the whole
    raster."""
    return conv_reach_px() * INPUT_GSD + LOCAL_NORM_M / 2


def grid_step():
    """The network's coarsest stride, in input pixels: windows must start on
    multiples of it, or each would see the image on a shifted grid and the
    same car would score differently in different windows."""
    step = 1
    for name, cin, cout, k, stride, dil in LAYERS:
        step *= stride or 1
    return step


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
    return conv_hwc(xl, tap_weights(w), b, stride, dilation).transpose(2, 0, 1)


def tap_weights(w):
    """(Cout, Cin, k, k) -> (k, k, Cin, Cout), contiguous: BLAS multiplies
    contiguous matrices only; a strided weight slice silently falls back to a
    loop more than ten times slower."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0), dtype=np.float32)


# Bytes of gathered input per block in conv_hwc: the network ran fastest
# with 1-2 MB here (2-core AMD EPYC); with 8 MB no faster than before.
IM2COL_BLOCK_BYTES = 3 << 19


def conv_hwc(x, taps, b, stride=1, dilation=1):
    """The same on channels-last arrays (H, W, C) with tap_weights(). The
    padded input is seen as one long list of pixels, so each tap's input is
    a contiguous slice of it; the few outputs that wrap around the row ends
    are cut off at the end."""
    h, wd, c = x.shape
    k = taps.shape[0]
    if k == 1:
        return (x.reshape(-1, c) @ taps[0, 0] + b).reshape(h, wd, -1)
    d = dilation
    if stride == 1 and c <= 4:
        return _conv_few_channels(x, taps, b, d)
    if stride == 1:
        ho, wo = h, wd
        xp = np.zeros((h + 2 * d + 1, wd + 2 * d, c), np.float32)
        xp[d:d + h, d:d + wd] = x
        phases = {(0, 0): xp}
        shift = lambda ky, kx: ((0, 0), ky * d, kx * d)
    else:
        # stride 2 (dilation 1): the four even/odd row/column phases of the
        # padded input; each tap reads one phase at stride 1
        ho, wo = (h + 1) // 2, (wd + 1) // 2
        phases = {}
        for py in range(2):
            for px in range(2):
                ph = np.zeros((ho + 2, wo + 1, c), np.float32)
                part = x[1 - py::2, 1 - px::2]       # padded row 2i+py = input row 2i+py-1
                ph[1 - py:1 - py + part.shape[0], 1 - px:1 - px + part.shape[1]] = part
                phases[(py, px)] = ph
        shift = lambda ky, kx: ((ky % 2, kx % 2), ky // 2, kx // 2)
    width = phases[(0, 0)].shape[1]
    n = ho * width
    taps_in = []
    for ky in range(3):
        for kx in range(3):
            key, oy, ox = shift(ky, kx)
            taps_in.append((phases[key].reshape(-1, c), oy * width + ox))
    weights = taps.reshape(9 * c, -1)
    out = np.empty((n, weights.shape[1]), np.float32)
    # A block of output pixels at a time, its nine taps' inputs side by side
    # (9 x C columns) times all the weights in one product: BLAS runs one
    # deep product faster than nine shallow ones summed (48 channels: 70
    # against 32 GFLOP/s here), and a block small enough to stay in the
    # cache keeps the copy cheap.
    rows = max(256, IM2COL_BLOCK_BYTES // (9 * c * 4))
    cols = np.empty((min(rows, n), 9 * c), np.float32)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        for k, (flat, off) in enumerate(taps_in):
            cols[:r1 - r0, k * c:(k + 1) * c] = flat[off + r0: off + r1]
        block = out[r0:r1]
        np.matmul(cols[:r1 - r0], weights, out=block)
        block += b
    return out.reshape(ho, width, -1)[:, :wo]


def _conv_few_channels(x, taps, b, d):
    """conv_hwc at stride 1 for inputs of a few channels (the image's two):
    nine products with two rows each would leave BLAS idle, so the nine
    taps are gathered into one matrix, channels first (whole-row copies),
    and multiplied at once."""
    h, wd, c = x.shape
    xp = np.zeros((c, h + 2 * d + 1, wd + 2 * d), np.float32)
    xp[:, d:d + h, d:d + wd] = x.transpose(2, 0, 1)
    width = wd + 2 * d
    n = h * width
    flat = xp.reshape(c, -1)
    cols = np.empty((9 * c, n), np.float32)
    for k in range(9):
        off = (k // 3) * d * width + (k % 3) * d
        cols[k * c:(k + 1) * c] = flat[:, off:off + n]
    out = np.ascontiguousarray((taps.reshape(9 * c, -1).T @ cols).T)
    out += b
    return out.reshape(h, width, -1)[:, :wd]


# Output pixels (1 m) around the first pass's hot pixels where predict()
# averages in the second pass: the whole of any car that could reach the
# threshold, and its peak's neighbours.
HOT_MARGIN_PX = 16

# Rows of the first stride-2 layer's output computed at a time by
# conv_pair_banded: its full-resolution input never exists whole.
BAND_ROWS = 32


def conv_pair_banded(x, taps1, b1, taps2, b2, is_canceled=None):
    """relu(conv(relu(conv(x, taps1)), taps2, stride 2)) on a channels-last
    array (H, W, C), a band of output rows at a time. The first layer's
    output, at full resolution and wide, is the largest array of the whole
    network; banding keeps only a slice of it, and a count needs 60-70 MB
    less memory. The result is exactly that of the two layers run whole:
    each band is computed from the input rows it depends on, with one spare
    row above whose output is thrown away."""
    h = x.shape[0]
    ho = (h + 1) // 2
    out = None
    for a in range(0, ho, BAND_ROWS):
        if is_canceled is not None and is_canceled():
            raise Canceled()
        b = min(ho, a + BAND_ROWS)
        # output row i reads first-layer rows 2i-1..2i+1, which read input
        # rows 2i-2..2i+2; start one output row early (on an even input row)
        # so the band's own first row has real input above it
        s0 = max(0, 2 * a - 2)
        first = conv_hwc(x[s0:min(h, 2 * b + 1)], taps1, b1)
        np.maximum(first, 0, out=first)
        part = conv_hwc(first, taps2, b2, stride=2)
        skip = (2 * a - s0) // 2
        if out is None:
            out = np.empty((ho,) + part.shape[1:], np.float32)
        out[a:b] = part[skip:skip + b - a]
    np.maximum(out, 0, out=out)
    return out


class RailcarNet:
    def __init__(self, path=WEIGHTS):
        with np.load(path) as data:
            self.p = {k: data[k].astype(np.float32) for k in data.files}
        self.taps = {name: tap_weights(self.p[name + ".weight"])
                     for name, *_ in LAYERS if name != "up"}
        self.head = np.ascontiguousarray(self.p["head.weight"].reshape(HEAD, -1).T)

    def __call__(self, x, is_canceled=None):
        """x: (2, H, W) input channels -> (HEAD, ceil(H/2), ceil(W/2)) raw
        outputs at 1 m; output pixel j lies on input pixel 2j.
        ``is_canceled()`` is asked between layers so Cancel is prompt."""
        p = self.p
        low = None
        # c1 and c2 together, in bands (see conv_pair_banded)
        skip = prev = conv_pair_banded(np.ascontiguousarray(x.transpose(1, 2, 0)),
                                       self.taps["c1"], p["c1.bias"], self.taps["c2"],
                                       p["c2.bias"], is_canceled)
        for name, cin, cout, k, stride, dil in LAYERS[2:]:
            if is_canceled is not None and is_canceled():
                raise Canceled()
            if name == "up":
                low = prev
                continue
            if low is not None:
                # The 1x1 layer after 'up' sees [upsampled low, skip]. Its
                # part on the upsampled half is applied at 2 m first (4x
                # fewer pixels; no 72-channel array at 1 m), then added to
                # each of the four 1 m pixels of its 2 m pixel in place (an
                # upsampled copy would be the largest array of the pass).
                w = self.taps[name][0, 0]
                n = low.shape[2]
                part = (low.reshape(-1, n) @ w[:n]).reshape(low.shape[0], low.shape[1], -1)
                h, wd, c = skip.shape
                prev = (skip.reshape(-1, c) @ w[n:] + p[name + ".bias"]).reshape(h, wd, -1)
                low = skip = None
                for dy in (0, 1):
                    for dx in (0, 1):
                        view = prev[dy::2, dx::2]
                        view += part[:view.shape[0], :view.shape[1]]
                part = None
            else:
                prev = conv_hwc(prev, self.taps[name], p[name + ".bias"], stride, dil)
            np.maximum(prev, 0, out=prev)
        h, w, c = prev.shape
        out = prev.reshape(-1, c) @ self.head + p["head.bias"]
        return np.ascontiguousarray(out.reshape(h, w, HEAD).transpose(2, 0, 1))

    def predict(self, x, is_canceled=None, heat_threshold=0.0):
        """Outputs averaged over the image as it is and turned by 180 degrees
        (a two-member ensemble for the price of two passes: fewer misses and
        fewer false cars than one pass on held-out scenes). A half turn
        leaves the axis outputs (cos 2a, sin 2a), length and width as they
        are, so all outputs average directly.

        With a ``heat_threshold``, the second pass is only run around where
        the first pass's heat reaches half of it: elsewhere (fields, water,
        roofs: most of a large scene) the mean could reach the threshold
        only if the second pass saw a car the first one all but missed.
        Within HOT_MARGIN_PX of the hot pixels the outputs are the mean of
        both passes, the same as on the whole image (the second pass sees
        the network's whole reach around them); beyond, the first pass's."""
        c, h, w = x.shape
        plain = self(x, is_canceled)
        oy0, ox0 = 0, 0
        oy1, ox1 = plain.shape[1:]
        if heat_threshold > 0:
            hot = plain[0] >= _logit(heat_threshold / 2)
            rows, cols = np.nonzero(hot.any(axis=1))[0], np.nonzero(hot.any(axis=0))[0]
            if not len(rows):
                return plain
            oy0, oy1 = max(0, rows[0] - HOT_MARGIN_PX), min(oy1, rows[-1] + 1 + HOT_MARGIN_PX)
            ox0, ox1 = max(0, cols[0] - HOT_MARGIN_PX), min(ox1, cols[-1] + 1 + HOT_MARGIN_PX)
        # the input around that box, as far as the network reaches, starting
        # on its grid so the crop sees the image as the whole window does
        step, reach = grid_step(), conv_reach_px() + 2
        iy0 = max(0, OUTPUT_STRIDE * oy0 - reach) // step * step
        ix0 = max(0, OUTPUT_STRIDE * ox0 - reach) // step * step
        iy1 = min(h, OUTPUT_STRIDE * oy1 + reach)
        ix1 = min(w, OUTPUT_STRIDE * ox1 + reach)
        crop = x[:, iy0:iy1, ix0:ix1]
        # the crop turned, padded (before it, once turned) to sizes of 4k+1
        # so the turned image keeps the 4-pixel grid (turned pixel i is
        # pixel size-1-i) and output pixel j stays on 2j
        ch, cw = crop.shape[1:]
        hp, wp = ch + (1 - ch) % 4, cw + (1 - cw) % 4
        padded = np.zeros((c, hp, wp), np.float32)
        padded[:, hp - ch:, wp - cw:] = crop[:, ::-1, ::-1]
        turned = self(padded, is_canceled)[:, ::-1, ::-1]
        jy, jx = iy0 // OUTPUT_STRIDE, ix0 // OUTPUT_STRIDE
        box = plain[:, oy0:oy1, ox0:ox1]
        box += turned[:, oy0 - jy:oy1 - jy, ox0 - jx:ox1 - jx]
        box *= 0.5
        return plain


def _logit(p):
    return float(np.log(p / (1.0 - p)))


_cached = {}


def default_network(coarse=False):
    """The shipped network, loaded once: for imagery at 0.5 m and finer,
    or with ``coarse`` the one for coarser imagery."""
    path = COARSE_WEIGHTS if coarse else WEIGHTS
    if path not in _cached:
        _cached[path] = RailcarNet(path)
    return _cached[path]
