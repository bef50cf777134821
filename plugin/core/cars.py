"""Find railcars in one image tile (numpy only).

The tile is brightness at 0.5 m per pixel (NaN where there is no data). The
railcar network marks car centres with a heat map and says, at each centre,
the car's axis, length and width; each local maximum of the heat map is a
candidate. The verifier then looks at a strip of image along each
candidate's axis and says whether a car is centred there and of which type;
a second verifier does the same knowing which side of the car its shadow
lies on, once the image's cars (or its date or metadata) have told that
side (shadows.py, settle). A car is a candidate whose score (heat and verifier
together) reaches the image's threshold (scene_threshold): tiles keep every
candidate that could reach it, and the detector applies it once the whole
image is counted.
"""
from dataclasses import dataclass
import math

import numpy as np

from .network import (INPUT_GSD, LENGTH_REF_M, OUTPUT_STRIDE, TYPES, WIDTH_REF_M,
                      default_network, input_channels)
from . import shadows
from .verifier import BATCH, CLASSES, default_verifier, strips

MAX_CAR_M = 24.5          # longest car body the detector reports (railcars.md: 23.2 m)

# Imagery coarser than this is counted with a second network and verifier,
# trained with quiet yards as well (a dozen lone cars, or none): on 1 m
# images of such yards the first pair boxed bare track as cars (a held-out
# yard of 16 cars: 89 found; an empty one: 20). The second pair costs 0.007
# of F1 on the dense 0.5 m tuning scenes, so finer imagery keeps the first.
COARSE_MODEL_GSD_M = 0.6


def models_for(gsd_m):
    """The network, the verifier and the shadow-side verifier for imagery
    of ``gsd_m`` metre pixels."""
    coarse = gsd_m > COARSE_MODEL_GSD_M
    return (default_network(coarse), default_verifier(coarse),
            default_verifier(coarse, shadow_side=True))


@dataclass
class PixelCar:
    """A car in the tile's pixel frame (x right, y down, 0.5 m pixels)."""
    x: float
    y: float
    length: float     # pixels
    width: float      # pixels
    theta: float      # direction of the long axis, radians, pixel frame
    score: float
    type: str = "unknown"
    heat: float = 0.0     # the network's heat at the centre
    # what the verifier made of the car, (score, type), under each reading
    # of the shadows: None, the side unknown; True, the car's shadow on its
    # strip's last rows' side (shadows.across_axis); False, on the first's.
    # settle() picks one once the image's shadow side is known.
    readings: dict = None
    side: float = 0.0     # its vote on the shadow side (shadows.side_difference)


# Score (the geometric mean of the network's heat and the verifier's
# probability that a car is centred there) a car must reach at the default
# sensitivity, when an image shows too few clear cars to judge it by them.
# Chosen on the tuning scenes (never on the held-out ones): F1 peaks at 0.40
# both at <= 0.5 m (0.964) and at 0.7-1 m (0.957).
BASE_THRESHOLD = 0.40
# Images that score every car lower (noise, compression, soft optics, and
# imagery unlike the training scenes) would lose cars to a fixed threshold,
# and images that score every car high would keep their near-misses: the
# threshold is half the median score of the image's clear cars (those at
# BASE_THRESHOLD or more), within these bounds. Chosen on the tuning
# scenes, as generated and perturbed: the mean count error per scene fell
# from 3.6 to 3.2 % at <= 0.5 m and from 2.6 to 1.7 % at 0.7-1 m, and with
# 4 % noise added at 0.7-1 m from 5.5 to 1.7 %; below 0.35, false cars on
# look-alikes grew.
RELATIVE_THRESHOLD = 0.5
THRESHOLD_RANGE = (0.35, 0.50)
CLEAR_CARS = 40           # fewer clear cars: the threshold leans to BASE_THRESHOLD


def _sensitivity_offset(sensitivity):
    """Sensitivity 1 lowers the threshold by 0.25, 0 raises it as much."""
    return (0.5 - sensitivity) * 0.5


def _threshold(base, sensitivity):
    return float(np.clip(base + _sensitivity_offset(sensitivity), 0.05, 0.9))


def scene_threshold(scores, sensitivity=0.5):
    """The score a car must reach on an image whose candidates (all that
    reach floor_threshold) scored ``scores``."""
    scores = np.asarray(scores, np.float64)
    clear = scores[scores >= BASE_THRESHOLD]
    base = BASE_THRESHOLD
    if len(clear):
        relative = float(np.clip(RELATIVE_THRESHOLD * np.median(clear), *THRESHOLD_RANGE))
        base += min(1.0, len(clear) / CLEAR_CARS) * (relative - BASE_THRESHOLD)
    return _threshold(base, sensitivity)


def floor_threshold(sensitivity=0.5):
    """The lowest threshold scene_threshold can give: tiles keep every
    candidate that scores more."""
    return _threshold(THRESHOLD_RANGE[0], sensitivity)


def _max3x3(a):
    p = np.pad(a, 1, mode="constant", constant_values=-np.inf)
    h, w = a.shape
    m = a.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            np.maximum(m, p[dy:dy + h, dx:dx + w], out=m)
    return m


# Below this probability (that a car is of its likeliest type) the type is
# "unknown": say only what it can tell. On the tuning scenes 0.8 names the
# type of about half the cars and is right 87-99 % of the time per type.
TYPE_CONFIDENCE = 0.8
# A locomotive counted as freight adds one to the count, a freight car
# called a locomotive takes one away: 0.6 makes the fewest of both on the
# tuning scenes (0.8 misses half the locomotives).
LOCOMOTIVE_CONFIDENCE = 0.6


def _car_type(type_probs):
    k = int(np.argmax(type_probs))
    bar = LOCOMOTIVE_CONFIDENCE if TYPES[k] == "locomotive" else TYPE_CONFIDENCE
    return TYPES[k] if type_probs[k] >= bar else "unknown"


def detect_in_tile(gray, sensitivity=0.5, track_mask=None, network=None, is_canceled=None,
                   verifier=None, shadow_verifier=None, side=None):
    """Candidate railcars in a tile of brightness at 0.5 m per pixel, with
    the verifiers' readings (verify; ``side``: the image's shadow side
    where it is known already): all that score above floor_threshold under
    one of them. ``track_mask`` (bool, same shape) keeps only cars centred
    on known tracks. The detector settles each car's score once the whole
    image has told its shadow side, then applies the image's
    scene_threshold."""
    x, valid = input_channels(gray)
    if valid.mean() < 0.02:
        return []
    min_score = floor_threshold(sensitivity)
    # the score is at most the heat: weaker peaks cannot reach min_score.
    # The network's second pass runs around heat near the base threshold's:
    # gating it at the floor's ran it over 25 % more of a large scene
    # (8000 px: 52 s against 42 s) for the same cars on every benchmark suite.
    cars = candidates(x, valid, min_score ** 2, network, is_canceled,
                      second_pass_heat=_threshold(BASE_THRESHOLD, sensitivity) ** 2)
    if track_mask is not None:
        h, w = track_mask.shape
        cars = [c for c in cars if track_mask[min(int(round(c.y)), h - 1), min(int(round(c.x)), w - 1)]]
    verify(x, cars, verifier, shadow_verifier, side)
    return [c for c in cars if max(score for score, _ in c.readings.values()) > min_score]


# Told the side, the shadow-side verifier is sure of a car (p about 1
# for the 10 cars of a winter yard under a 15 degree sun) and doubts a
# shadow on the next track (0.37-0.73 there); the network's heat, higher
# on those long shadows than on the cars, carried six of them over the
# threshold. A candidate that the shadow-side verifier, told the side,
# gives less than even odds is no car, whatever its heat.
SIDE_MIN_P = 0.5


def verify(x, cars, verifier=None, shadow_verifier=None, side=None):
    """The verifiers' second look at each candidate. Under each reading of
    the shadows (PixelCar.readings) its score is the geometric mean of the
    heat and the probability that a car is centred there, and its type is
    the verifier's (where it is sure enough). Where the image's shadow
    ``side`` is known already (shadows.ShadowSide) only its reading is
    made; until then every car also casts its vote on the side."""
    verifier = verifier or default_verifier()
    for k in range(0, len(cars), BATCH):
        batch = cars[k:k + BATCH]
        s = strips(x, [c.x for c in batch], [c.y for c in batch], [c.theta for c in batch])
        if shadow_verifier is not None and side is not None:
            keys = [side.reading(c.theta) for c in batch]
            first = np.array([k is False for k in keys])
            s[first] = s[first][:, :, ::-1]
            by_side = np.array([k is not None for k in keys])
            p = np.zeros((len(batch), len(CLASSES)), np.float32)
            if by_side.any():
                p[by_side] = shadow_verifier.strip_probabilities(s[by_side])
            if not by_side.all():
                p[~by_side] = verifier.strip_probabilities(s[~by_side])
            for i, car in enumerate(batch):
                car.readings = {keys[i]: _reading(car.heat, p[i], keys[i] is not None)}
            continue
        probs = {None: verifier.strip_probabilities(s)}
        if shadow_verifier is not None:
            probs[True] = shadow_verifier.strip_probabilities(s)
            probs[False] = shadow_verifier.strip_probabilities(s[:, :, ::-1])
        sides = shadows.side_difference(s[:, 0])
        for i, car in enumerate(batch):
            car.side = float(sides[i])
            car.readings = {key: _reading(car.heat, p[i], key is not None)
                            for key, p in probs.items()}
    return cars


def _reading(heat, p, by_side=False):
    """(score, type) of a car from its heat and the verifier's class
    probabilities ``p`` (``by_side``: the shadow-side verifier's)."""
    p_car = float(1.0 - p[0])
    if by_side and p_car < SIDE_MIN_P:
        p_car = 0.0
    return math.sqrt(heat * p_car), _car_type(p[1:] / max(p_car, 1e-6))


def shadow_side(voters, by_date=None):
    """The image's shadow side (shadows.estimate) from the votes of its
    likely cars (heat at least shadows.VOTE_HEAT), each weighing its
    side-unknown score squared: its heat times the verifier's probability;
    or where they do not tell, from ``by_date`` (as shadows.estimate)."""
    return shadows.estimate([c.side for c in voters], [c.theta for c in voters],
                            [c.readings[None][0] ** 2 for c in voters], by_date)


def settle(cars, side, min_score):
    """Each car's score and type under the reading that the image's shadow
    ``side`` (shadows.ShadowSide) gives it, the side-unknown one where the
    side is not told; the cars scoring above ``min_score``."""
    kept = []
    for car in cars:
        if len(car.readings) == 1:      # one verifier, or read with the side known
            key = next(iter(car.readings))
        else:
            key = side.reading(car.theta) if side is not None else None
        car.score, car.type = car.readings[key]
        if car.score > min_score:
            kept.append(car)
    return kept


def candidates(x, valid, heat_threshold, network=None, is_canceled=None, second_pass_heat=None):
    """Cars the network proposes in the input channels ``x``: local maxima
    of its heat map above ``heat_threshold``, scored by their heat. The
    network's second pass runs around where the first pass's heat reaches
    half of ``second_pass_heat`` (default: ``heat_threshold``)."""
    out = (network or default_network()).predict(x, is_canceled,
                                                 second_pass_heat or heat_threshold)
    heat = 1.0 / (1.0 + np.exp(-np.clip(out[0], -30, 30)))
    s = OUTPUT_STRIDE
    heat[~valid[::s, ::s][:heat.shape[0], :heat.shape[1]]] = 0.0
    peaks = (heat >= _max3x3(heat)) & (heat > heat_threshold)
    js, is_ = np.nonzero(peaks)
    cars = []
    h, w = heat.shape
    for j, i in zip(js, is_):
        # centre: heat-weighted mean over the 3x3 around the peak
        y0, y1, x0, x1 = max(0, j - 1), min(h, j + 2), max(0, i - 1), min(w, i + 2)
        wts = heat[y0:y1, x0:x1]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        cy = float((wts * yy).sum() / wts.sum()) * s
        cx = float((wts * xx).sum() / wts.sum()) * s
        c2, s2 = float(out[1, j, i]), float(out[2, j, i])
        theta = 0.5 * math.atan2(s2, c2)
        length_m = float(np.clip(LENGTH_REF_M * math.exp(out[3, j, i]), 4.0, MAX_CAR_M))
        width_m = float(np.clip(WIDTH_REF_M * out[4, j, i], 2.2, 3.6))
        cars.append(PixelCar(cx, cy, length_m / INPUT_GSD, width_m / INPUT_GSD, theta,
                             float(heat[j, i]), heat=float(heat[j, i])))
    return cars
