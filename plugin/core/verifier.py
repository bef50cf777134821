"""A second look at each candidate car (numpy only).

The railcar network proposes car centres from a wide view. The verifier
then looks at a strip of image cut out along each candidate's axis
(28 m long, 12 m across, 0.5 m pixels: the car, its ends, its neighbours
on the track and the ground beside it where its shadow falls) and says
whether a car is centred there, and of which type. It learns from every
pixel of the strip, where the network's type output learns from one pixel
per car, so it tells types (locomotives among them) far better, and it
turns away shadows, containers and trucks the network mistook for cars.
The shadow-side verifier is the same network trained on strips turned so
that the car's shadow falls on their last rows: told the side (shadows.py),
it tells a car's shadow on the next track from a dark car far better.

Trained by tests/benchmarks/train_verifier.py (PyTorch, development only).
"""
import os

import numpy as np

from .network import TYPES, conv_hwc, tap_weights

WEIGHTS = os.path.join(os.path.dirname(__file__), "railcar_verifier.npz")
COARSE_WEIGHTS = os.path.join(os.path.dirname(__file__), "railcar_verifier_coarse.npz")
# Two shadow-side verifiers, their probabilities averaged (Ensemble): the
# second was trained with strips whose shadow falls along the car turned
# either way (train_verifier.py --along-either-way)
SHADOW_SIDE_WEIGHTS = tuple(os.path.join(os.path.dirname(__file__), name) for name in
                            ("railcar_verifier_shadow_side.npz",
                             "railcar_verifier_shadow_side_along.npz"))
# The same two for coarse imagery, trained on the coarse network's candidates
COARSE_SHADOW_SIDE_WEIGHTS = tuple(os.path.join(os.path.dirname(__file__), name) for name in
                                   ("railcar_verifier_coarse_shadow_side.npz",
                                    "railcar_verifier_coarse_shadow_side_along.npz"))
STRIP_LENGTH = 56      # pixels along the car axis (28 m at 0.5 m)
STRIP_WIDTH = 24       # pixels across it (12 m)
CLASSES = ("none",) + TYPES          # "none": no car is centred here
# (name, in channels, out channels): 3x3 convolutions, each followed by a
# 2x2 max pool, so the strip shrinks to 7 x 3 cells before two dense layers
CONVS = (("v1", 2, 16), ("v2", 16, 32), ("v3", 32, 48))
HIDDEN = 64
BATCH = 64             # candidates verified at once (memory)
FLAT = (STRIP_WIDTH // 8) * (STRIP_LENGTH // 8) * CONVS[-1][2]


def strips(x, xs, ys, thetas):
    """Strips of the input channels ``x`` (C, H, W) centred on (xs, ys)
    (input pixels) along the axes ``thetas`` (radians, pixel frame):
    (N, C, STRIP_WIDTH, STRIP_LENGTH), bilinear, zero outside the tile."""
    xs, ys, thetas = (np.asarray(a, np.float32).reshape(-1) for a in (xs, ys, thetas))
    c, h, w = x.shape
    u = np.arange(STRIP_LENGTH, dtype=np.float32) - (STRIP_LENGTH - 1) / 2.0
    v = np.arange(STRIP_WIDTH, dtype=np.float32) - (STRIP_WIDTH - 1) / 2.0
    cos, sin = np.cos(thetas)[:, None, None], np.sin(thetas)[:, None, None]
    px = xs[:, None, None] + u[None, None, :] * cos - v[None, :, None] * sin
    py = ys[:, None, None] + u[None, None, :] * sin + v[None, :, None] * cos
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fx, fy = px - x0, py - y0
    flat = x.reshape(c, -1)
    out = np.zeros((c,) + px.shape, np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            idx = np.where(inside, yi * w + xi, 0)
            out += flat[:, idx] * (wx * wy * inside)[None]
    return out.transpose(1, 0, 2, 3)


def _conv3x3(a, taps, b):
    """'Same' 3x3 convolution of a batch (N, H, W, C) with taps (3, 3, C,
    Cout) (network.tap_weights): the strips stacked into one tall image,
    a row of zeros after each so none sees its neighbour, through the
    network's own convolution."""
    n, h, wd, c = a.shape
    tall = np.zeros((n, h + 1, wd, c), np.float32)
    tall[:, :h] = a
    out = conv_hwc(tall.reshape(n * (h + 1), wd, c), taps, b)
    return out.reshape(n, h + 1, wd, -1)[:, :h]


def _pool2(a):
    """2x2 max pool of (N, H, W, C), H and W even."""
    return np.maximum(np.maximum(a[:, 0::2, 0::2], a[:, 0::2, 1::2]),
                      np.maximum(a[:, 1::2, 0::2], a[:, 1::2, 1::2]))


class Verifier:
    def __init__(self, path=WEIGHTS, shadow_side=False):
        # shadow_side: trained on strips turned so that the car's shadow
        # falls on their last rows (shadows.py)
        self.shadow_side = shadow_side
        with np.load(path) as data:
            self.p = {k: data[k].astype(np.float32) for k in data.files}
        self.taps = {name: tap_weights(self.p[name + ".weight"]) for name, _, _ in CONVS}

    def logits(self, batch):
        """(N, 2, STRIP_WIDTH, STRIP_LENGTH) strips -> (N, len(CLASSES))."""
        p = self.p
        a = np.ascontiguousarray(batch.transpose(0, 2, 3, 1), dtype=np.float32)
        for name, cin, cout in CONVS:
            # pooling before the ReLU gives the same and costs a quarter
            a = np.maximum(_pool2(_conv3x3(a, self.taps[name], p[name + ".bias"])), 0)
        # the dense layer was trained on (C, H, W) order
        a = a.transpose(0, 3, 1, 2).reshape(len(a), -1)
        a = np.maximum(a @ p["fc1.weight"].T + p["fc1.bias"], 0)
        return a @ p["fc2.weight"].T + p["fc2.bias"]

    def strip_probabilities(self, s):
        """Class probabilities (N, len(CLASSES)) of strips (N, 2,
        STRIP_WIDTH, STRIP_LENGTH). Those of the side-unknown verifier are
        averaged over each strip and its copy turned end for end (the
        network's axis does not say which end is which). A shadow-side
        verifier's strips must have the shadow on their last rows' side;
        averaging them with their mirror along the axis changed no score
        that mattered (dense 0.5 m tuning yards: F1 0.975 both ways), so
        they are looked at once."""
        if self.shadow_side:
            z = self.logits(s)
        else:
            z = self.logits(np.concatenate([s, s[:, :, ::-1, ::-1]]))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        return e if self.shadow_side else 0.5 * (e[:len(s)] + e[len(s):])


class Ensemble:
    """Verifiers trained alike, their probabilities averaged: fewer errors
    than either alone (README, Quiet yards)."""

    def __init__(self, members):
        self.members = members
        self.shadow_side = members[0].shadow_side

    def strip_probabilities(self, s):
        return sum(m.strip_probabilities(s) for m in self.members) / len(self.members)


_cached = {}


def default_verifier(coarse=False, shadow_side=False):
    """A shipped verifier, loaded once: ``coarse`` for the one trained with
    the coarse-imagery network (cars.COARSE_MODEL_GSD_M), ``shadow_side``
    for the pair that is told which side the shadows fall on."""
    if shadow_side:
        paths = COARSE_SHADOW_SIDE_WEIGHTS if coarse else SHADOW_SIDE_WEIGHTS
        if paths not in _cached:
            _cached[paths] = Ensemble([Verifier(path, True) for path in paths])
        return _cached[paths]
    path = COARSE_WEIGHTS if coarse else WEIGHTS
    if path not in _cached:
        _cached[path] = Verifier(path)
    return _cached[path]
