"""Synthetic, georeferenced rail-yard scenes with ground truth.

Used by the tests, the accuracy and speed benchmarks and the demo. Pure numpy +
GDAL + shapely (no Qt, no QGIS) so it also runs inside QGIS.

How a scene is made
-------------------
* A *layout* in a local metric frame (x east, y south, origin at the raster's
  top-left corner): a bundle of parallel tracks (straight or a gentle arc),
  ladders and crossovers, roads, platforms, container stacks, sheds, truck
  parking, buildings, catenary masts and gantries. It depends only on
  ``seed``, so a *site* keeps its layout across dates.
* *Cars* placed on the tracks as coupled trains (1-1.5 m between bodies) and
  single cars, with real dimensions (see shared/reference/railcars.md). They
  depend on ``cars_seed``.
* Rendering is tile by tile: background at output resolution, then tracks,
  shadows and objects drawn with numpy on small local patches at a finer
  internal resolution, area-averaged down to the GSD (anti-aliasing: at 1 m a
  14 m car is 14 x 3 px and the gap is sub-pixel, as in real products). Then
  clouds, haze, PSF blur, optional sharpening, per-scene colour rendition,
  sensor noise, quantisation, nodata collar and optional JPEG round-trip.
  Memory is bounded by the tile size. Off-nadir views lean car roofs away
  from the satellite (truth follows the roof, shadows stay on the ground).

Public API: :class:`SceneSpec`, :class:`TruthCar`, :func:`generate_scene`,
:func:`cached_scene`, :func:`load_truth`, :func:`load_scene_info`,
:func:`generate_site` / :func:`site_spec`, :func:`tuning_suite`,
:func:`holdout_suite`, :func:`speed_spec`.

Truth is written next to the raster as ``<raster>.truth.geojson``: one polygon
per car (properties type, length_m, width_m, angle, hidden, train), plus
foreign members ``lookalikes`` (WKT footprints of trucks, containers, sheds,
platforms, masts...), ``tracks`` (centre lines) and ``track_corridors``
(polygons 2.5 m either side of each centre line), all in the raster's CRS.
"""
import dataclasses
import hashlib
import json
import math
import multiprocessing as mp
import os
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, osr

from .imaging import gauss_blur


GENERATOR_VERSION = 10          # bump when output changes (benchmark cache key)

TRUTH_SUFFIX = ".truth.geojson"
DEFAULT_MIX = {"box": 0.25, "tank": 0.2, "open": 0.3, "flat": 0.1, "covered": 0.15}
TUMANGANG_LONLAT = (130.60, 42.42)


# --------------------------------------------------------------------------- spec
@dataclass
class SceneSpec:
    """Everything that defines one scene. Defaults: a typical 0.5 m RGB yard."""
    name: str = "yard"
    seed: int = 0
    cars_seed: int = None           # None: same as seed (site: varies per date)
    gsd_m: float = 0.5
    crs: str = "EPSG:32652"         # UTM 52N (Tumangang); any GDAL CRS works
    center_lonlat: tuple = None     # None: Tumangang, or the CRS's area of use
    size_px: tuple = None           # (w, h); None: from size_m
    size_m: tuple = (500.0, 500.0)
    # layout
    n_tracks: int = 10
    track_spacing_m: tuple = (4.5, 5.0)
    track_angle_deg: float = 30.0   # azimuth of the tracks, clockwise from north
    curve_radius_m: float = 0.0     # 0: straight; +R bends right, -R left
    turnouts: int = 0               # crossovers between neighbouring tracks
    ladder: bool = False            # tracks fan out from a lead at one end
    gauge_m: float = 1.435          # 1.52 for Russian gauge; site mixes both
    # cars
    n_cars: int = None              # exact number of freight cars, else occupancy
    occupancy: float = 0.45         # fraction of usable track length with cars
    car_mix: dict = None            # type -> weight; None: DEFAULT_MIX
    locomotive_rate: float = 0.3    # chance that a train has a locomotive
    single_car_rate: float = 0.15   # chance that a placement is a lone car
    # light and season
    sun_azimuth: float = 150.0      # where the sun is, clockwise from north
    sun_elevation: float = 40.0
    season: str = "summer"          # summer, autumn, winter, spring
    snow: float = 0.0               # 0..1 snow cover off the yard (winter)
    # look-alikes and surroundings
    roads: int = 1
    trucks: int = 4                 # trucks driving on roads
    truck_parking: int = 0          # trailers parked side by side
    containers: int = 16            # shipping containers in stacks near tracks
    sheds: int = 1                  # long narrow sheds beside the tracks
    platforms: int = 0
    buildings: int = 6
    trees: int = -1                 # -1: about 150 per km2, in clumps and rows
    catenary: bool = False          # masts + gantries with thin shadows
    # degradations
    off_nadir_deg: float = 0.0      # view angle: tall things lean away from the satellite
    view_azimuth: float = 200.0     # direction from the ground to the satellite
    blur: float = 0.5               # PSF sigma in output pixels
    sharpen: float = 0.0            # unsharp-mask gain of the product (halos at edges)
    noise: float = 0.008            # sensor noise sigma, fraction of full scale
    haze: float = 0.03              # 0..0.6 veil towards a bluish grey
    jpeg_quality: int = None        # e.g. 60: JPEG round trip (uint8 only)
    clouds: float = 0.0             # 0..1 fraction of the scene under cloud
    nodata_edge: float = 0.0        # 0..0.4 width of a skewed nodata collar
    alpha: bool = False             # uint8: write an alpha band instead of nodata
    # product
    dtype: str = "uint8"            # uint8, uint16, float32
    bit_depth: int = 11             # uint16 only: 11 or 12
    bands: str = "rgb"              # rgb, bgrn (B,G,R,NIR), pan
    date: str = ""                  # ISO date: written as TIFFTAG_DATETIME
    supersample: int = 0            # internal fine factor; 0: auto
    compress: str = None            # GeoTIFF compression, None = none
    tile_px: int = 0                # render tile (output px); 0: auto

    def key(self):
        """Stable hash of the spec + generator version (for caching)."""
        d = dataclasses.asdict(self)
        d["_v"] = GENERATOR_VERSION
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class TruthCar:
    """One true railcar. Coordinates are map units of the scene's CRS."""
    cx: float
    cy: float
    length_m: float
    width_m: float
    angle: float                    # azimuth of the long axis, [0, 180)
    type: str
    corners: list
    hidden: bool = False            # fully under a cloud: nobody can count it
    train: int = -1                 # cars of one coupled string share an id

    def ring(self):
        return list(self.corners) + [self.corners[0]]

    def wkt(self):
        return "POLYGON((%s))" % ", ".join("%.12g %.12g" % tuple(p) for p in self.ring())

    def is_freight(self):
        return self.type != "locomotive"


# --------------------------------------------------------------------------- utilities
def _hash_u32(*arrays):
    """Deterministic integer hash of integer arrays -> float in [0, 1)."""
    h = 0x9E3779B97F4A7C15
    out = None
    for a in arrays:
        a = np.asarray(a).astype(np.int64).astype(np.uint64)
        x = a * np.uint64(0xBF58476D1CE4E5B9) + np.uint64(h)
        out = x if out is None else (out ^ x) * np.uint64(0x94D049BB133111EB)
        h = (h + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    x = out
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(32)
    return (x & np.uint64(0xFFFFFF)).astype(np.float32) / np.float32(16777216.0)


def _interp_matrix(coords, scale):
    """Rows of smoothstep weights on a lattice of spacing ``scale``."""
    g = coords / scale
    i0 = np.floor(g).astype(np.int64)
    base = i0.min()
    n = i0.max() - base + 2
    w = g - i0
    w = w * w * (3 - 2 * w)
    m = np.zeros((len(coords), n), np.float32)
    r = np.arange(len(coords))
    m[r, i0 - base] = 1 - w
    m[r, i0 - base + 1] = w
    return m, base, n


def _value_noise(xs, ys, scale, seed):
    """Smooth value noise in [0, 1) sampled on the grid xs (cols) x ys (rows),
    continuous across tiles (lattice values are hashed from coordinates)."""
    mx, bx, nx = _interp_matrix(np.asarray(xs, np.float64), scale)
    my, by, ny = _interp_matrix(np.asarray(ys, np.float64), scale)
    jj, ii = np.meshgrid(np.arange(bx, bx + nx), np.arange(by, by + ny))
    lat = _hash_u32(ii, jj, np.full(ii.shape, seed))
    return my @ lat @ mx.T


def _band(d, hw, f):
    """Fraction of a pixel of size f centred at offset d covered by [-hw, hw]
    (exact 1-D box filter: thin lines get their true average darkness)."""
    return np.clip((np.minimum(d + f / 2, hw) - np.maximum(d - f / 2, -hw)) / f, 0.0, 1.0)


def _hull(points):
    pts = sorted(set((round(p[0], 6), round(p[1], 6)) for p in points))
    if len(pts) <= 2:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _rect(cx, cy, az, length, width):
    """Corners of a rectangle in the local frame (x east, y south)."""
    a = math.radians(az)
    ux, uy = math.sin(a), -math.cos(a)
    vx, vy = math.cos(a), math.sin(a)
    hl, hw = length / 2.0, width / 2.0
    return [(cx + ux * hl + vx * hw, cy + uy * hl + vy * hw),
            (cx - ux * hl + vx * hw, cy - uy * hl + vy * hw),
            (cx - ux * hl - vx * hw, cy - uy * hl - vy * hw),
            (cx + ux * hl - vx * hw, cy + uy * hl - vy * hw)]


def _muted(rgb, k=0.55):
    """Real paint seen from orbit is dusty and far less saturated than a
    palette: pull a colour towards its grey."""
    lum = 0.3 * rgb[0] + 0.59 * rgb[1] + 0.11 * rgb[2]
    return tuple(lum + k * (c - lum) for c in rgb)


def _rgbn(rgb, nir=None):
    r, g, b = rgb
    if nir is None:
        nir = 0.75 * (r + g + b) / 3.0 + 0.05      # paint, metal, concrete
    return np.array([r, g, b, nir], np.float32)


# --------------------------------------------------------------------------- frame
class _Frame:
    """Along-track coordinate s and signed offset t (to the right) of a
    straight or circular bundle centre line through p0 with azimuth az."""

    def __init__(self, p0, az, radius):
        self.p0 = np.array(p0, float)
        a = math.radians(az)
        self.u = np.array([math.sin(a), -math.cos(a)])
        self.n = np.array([math.cos(a), math.sin(a)])
        self.R = float(radius)
        if self.R:
            self.c = self.p0 + self.n * self.R
            self.d0 = -self.n * self.R

    def st(self, x, y):
        if not self.R:
            dx, dy = x - self.p0[0], y - self.p0[1]
            return dx * self.u[0] + dy * self.u[1], dx * self.n[0] + dy * self.n[1]
        dx, dy = x - self.c[0], y - self.c[1]
        r = np.hypot(dx, dy)
        cr = self.d0[0] * dy - self.d0[1] * dx
        dt = self.d0[0] * dx + self.d0[1] * dy
        return self.R * np.arctan2(cr, dt), self.R - math.copysign(1.0, self.R) * r

    def xy(self, s, t):
        s, t = np.asarray(s, float), np.asarray(t, float)
        if not self.R:
            return (self.p0[0] + self.u[0] * s + self.n[0] * t,
                    self.p0[1] + self.u[1] * s + self.n[1] * t)
        ang = s / self.R
        ca, sa = np.cos(ang), np.sin(ang)
        dx = self.d0[0] * ca - self.d0[1] * sa
        dy = self.d0[0] * sa + self.d0[1] * ca
        k = (abs(self.R) - math.copysign(1.0, self.R) * t) / abs(self.R)
        return self.c[0] + dx * k, self.c[1] + dy * k

    def az(self, s):
        x0, y0 = self.xy(s - 0.5, 0.0)
        x1, y1 = self.xy(s + 0.5, 0.0)
        return math.degrees(math.atan2(float(x1 - x0), float(-(y1 - y0)))) % 180.0

    def az_full(self, s):
        x0, y0 = self.xy(s - 0.5, 0.0)
        x1, y1 = self.xy(s + 0.5, 0.0)
        return math.degrees(math.atan2(float(x1 - x0), float(-(y1 - y0)))) % 360.0


# --------------------------------------------------------------------------- georeference
def _georef(spec, w_m, h_m):
    srs = osr.SpatialReference()
    if srs.SetFromUserInput(spec.crs) != 0:
        raise ValueError("Unknown CRS %r" % spec.crs)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat = spec.center_lonlat or _default_center(srs)
    p = math.radians(lat)
    m_lat = 111132.92 - 559.82 * math.cos(2 * p) + 1.175 * math.cos(4 * p)
    m_lon = 111412.84 * math.cos(p) - 93.5 * math.cos(3 * p)
    if srs.IsGeographic():
        ax, ay = 1.0 / m_lon, 1.0 / m_lat
        xc, yc = lon, lat
    else:
        geo = srs.CloneGeogCS()
        geo.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        tr = osr.CoordinateTransformation(geo, srs)
        xc, yc = tr.TransformPoint(lon, lat)[:2]
        xe = tr.TransformPoint(lon + 50.0 / m_lon, lat)[:2]
        xw = tr.TransformPoint(lon - 50.0 / m_lon, lat)[:2]
        xn = tr.TransformPoint(lon, lat + 50.0 / m_lat)[:2]
        xs = tr.TransformPoint(lon, lat - 50.0 / m_lat)[:2]
        ax = math.hypot(xe[0] - xw[0], xe[1] - xw[1]) / 100.0
        ay = math.hypot(xn[0] - xs[0], xn[1] - xs[1]) / 100.0
        unit = 1.0 / srs.GetLinearUnits()
        if abs(ax / unit - 1) < 0.01 and abs(ay / unit - 1) < 0.01:
            ax = ay = unit              # UTM, state plane: grid units are metres/feet
    x0 = xc - w_m / 2.0 * ax
    y0 = yc + h_m / 2.0 * ay
    return srs, ax, ay, x0, y0


def _default_center(srs):
    name = (srs.GetAuthorityCode(None) or "")
    if srs.IsGeographic() or name in ("32652", "3857", "4326", "32752"):
        return TUMANGANG_LONLAT
    try:
        area = srs.GetAreaOfUse()
        if area is not None:
            return ((area.west_lon_degree + area.east_lon_degree) / 2.0,
                    (area.south_lat_degree + area.north_lat_degree) / 2.0)
    except Exception:       # older GDAL: no area of use
        pass
    return TUMANGANG_LONLAT


# --------------------------------------------------------------------------- palettes
_SEASON = {   # grass rgb+nir, dry/soil rgb+nir
    "summer": ((0.085, 0.13, 0.06, 0.42), (0.24, 0.21, 0.17, 0.30)),
    "spring": ((0.12, 0.16, 0.08, 0.36), (0.26, 0.22, 0.18, 0.30)),
    "autumn": ((0.19, 0.17, 0.10, 0.30), (0.25, 0.21, 0.17, 0.29)),
    "winter": ((0.26, 0.24, 0.21, 0.26), (0.23, 0.21, 0.19, 0.26)),
}
# field parcels: grass, dry grass / stubble, bare soil, dark ploughed soil
_PARCELS = {
    "summer": ((0.085, 0.13, 0.06, 0.42), (0.15, 0.16, 0.09, 0.33), (0.24, 0.21, 0.17, 0.30),
               (0.15, 0.13, 0.10, 0.22)),
    "spring": ((0.11, 0.15, 0.08, 0.36), (0.20, 0.19, 0.13, 0.30), (0.26, 0.22, 0.18, 0.30),
               (0.16, 0.13, 0.11, 0.22)),
    "autumn": ((0.17, 0.16, 0.09, 0.30), (0.27, 0.24, 0.17, 0.31), (0.25, 0.21, 0.17, 0.29),
               (0.15, 0.13, 0.11, 0.21)),
    "winter": ((0.25, 0.23, 0.20, 0.25), (0.29, 0.27, 0.23, 0.28), (0.22, 0.20, 0.18, 0.25),
               (0.15, 0.14, 0.13, 0.19)),
}
_TREE = {"summer": (0.05, 0.09, 0.04, 0.38), "spring": (0.07, 0.11, 0.05, 0.34),
         "autumn": (0.16, 0.11, 0.05, 0.26), "winter": (0.12, 0.11, 0.10, 0.16)}
_BODY = {
    "brown": (0.20, 0.12, 0.08), "rust": (0.30, 0.16, 0.09), "red": (0.33, 0.08, 0.06),
    "blue": (0.08, 0.14, 0.27), "green": (0.09, 0.18, 0.12), "grey": (0.28, 0.28, 0.28),
    "silver": (0.52, 0.53, 0.54), "white": (0.66, 0.66, 0.64), "black": (0.045, 0.045, 0.05),
    "dark": (0.10, 0.10, 0.10), "teal": (0.08, 0.22, 0.22), "yellow": (0.50, 0.40, 0.08),
}
_BOX_COLOURS = ["brown", "brown", "rust", "red", "blue", "green", "grey", "silver", "white",
                "dark", "black", "teal"]
_TANK_COLOURS = ["black", "black", "dark", "silver", "white", "grey", "green", "blue", "yellow"]
_OPEN_COLOURS = ["rust", "brown", "dark", "black", "grey", "green", "red", "blue"]
_TARP = [(0.10, 0.18, 0.10), (0.20, 0.22, 0.13), (0.28, 0.29, 0.30), (0.09, 0.16, 0.30),
         (0.06, 0.09, 0.16), (0.05, 0.05, 0.05), (0.40, 0.40, 0.40)]
_LOADS = {"coal": (0.05, 0.05, 0.05), "ore": (0.30, 0.16, 0.10), "iron": (0.15, 0.12, 0.11),
          "gravel": (0.40, 0.38, 0.35), "chips": (0.42, 0.33, 0.20), "empty": None}
_CONTAINER = [(0.40, 0.09, 0.07), (0.24, 0.07, 0.06), (0.07, 0.14, 0.34), (0.11, 0.24, 0.12),
              (0.62, 0.62, 0.60), (0.33, 0.33, 0.33), (0.55, 0.27, 0.05), (0.52, 0.44, 0.07),
              (0.06, 0.25, 0.27), (0.22, 0.14, 0.09), (0.08, 0.08, 0.09)]
_ROOF = [(0.38, 0.38, 0.37), (0.14, 0.19, 0.33), (0.30, 0.12, 0.08), (0.12, 0.22, 0.14),
         (0.50, 0.50, 0.49), (0.20, 0.20, 0.21), (0.30, 0.29, 0.27)]


# --------------------------------------------------------------------------- layout
@dataclass
class _Obj:
    """A drawable object in the local frame."""
    kind: str                    # car, truck, container, shed, building, platform, ...
    cx: float
    cy: float
    az: float
    length: float
    width: float
    height: float
    colour: np.ndarray
    style: dict = field(default_factory=dict)
    ctype: str = ""              # car type for cars
    train: int = -1
    hidden: bool = False

    def bbox(self, extra=0.0):
        r = 0.5 * math.hypot(self.length, self.width) + extra
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r


class _Layout:
    pass


def _scene_size(spec):
    if spec.size_px:
        w, h = int(spec.size_px[0]), int(spec.size_px[1])
    else:
        w, h = int(round(spec.size_m[0] / spec.gsd_m)), int(round(spec.size_m[1] / spec.gsd_m))
    return w, h


def _build_layout(spec):
    rng = np.random.default_rng([int(spec.seed), 11])
    L = _Layout()
    L.w_px, L.h_px = _scene_size(spec)
    L.W, L.H = L.w_px * spec.gsd_m, L.h_px * spec.gsd_m
    W, H = L.W, L.H
    L.diag = math.hypot(W, H)
    # the bundle passes near the centre
    p0 = (W / 2 + rng.uniform(-0.08, 0.08) * W, H / 2 + rng.uniform(-0.08, 0.08) * H)
    L.frame = _Frame(p0, spec.track_angle_deg, spec.curve_radius_m)
    fr = L.frame
    # tracks: offsets with realistic spacing, wider gaps where masts stand
    offs, wide = [0.0], []
    for i in range(1, max(spec.n_tracks, 0)):
        gap = rng.uniform(*spec.track_spacing_m)
        if spec.catenary and rng.random() < 0.25:
            gap = rng.uniform(6.0, 7.0)
            wide.append(i)
        offs.append(offs[-1] + gap)
    offs = np.array(offs[:max(spec.n_tracks, 0)])
    if len(offs):
        offs -= offs.mean()
    L.t_tracks = offs
    if spec.gauge_m and spec.gauge_m > 0:
        L.gauges = np.full(len(offs), float(spec.gauge_m))
    else:      # dual-gauge yard (Tumangang: 1435 and 1520 mm)
        L.gauges = np.where(rng.random(len(offs)) < 0.5, 1.435, 1.52)
    L.sleepers = rng.choice(["concrete", "concrete", "wood"], size=len(offs))
    L.ballast_tone = rng.uniform(0.8, 1.12, size=len(offs))
    L.rail_polish = rng.random(len(offs)) < 0.6
    # little-used tracks grow weeds through the ballast
    L.weeds = np.where(rng.random(len(offs)) < 0.25, rng.uniform(0.3, 0.8, len(offs)), 0.0).astype(np.float32)
    # s range of the scene (all points of the raster)
    cs = [fr.st(np.array(x, float), np.array(y, float))
          for x, y in ((0, 0), (W, 0), (0, H), (W, H), (W / 2, 0), (W / 2, H), (0, H / 2), (W, H / 2))]
    ss = [float(c[0]) for c in cs]
    L.s_lo, L.s_hi = min(ss) - 20, max(ss) + 20
    L.s_range = [[L.s_lo, L.s_hi] for _ in offs]
    L.forbid = [[] for _ in offs]         # per track: [s0, s1] where cars cannot stand
    L.extra_tracks = []                   # polylines (local xy) of ladders, crossovers
    half = (offs.max() - offs.min()) / 2 if len(offs) else 0.0
    L.half_span = half
    # ladder: tracks fan out from track 0 at one end
    if spec.ladder and len(offs) > 1:
        alpha = math.radians(rng.uniform(9.0, 13.0))
        sign = rng.choice([-1, 1])
        s_vis = (L.s_lo + 20, L.s_hi - 20)
        s_a = (s_vis[0] if sign < 0 else s_vis[1]) - sign * rng.uniform(0.12, 0.25) * (s_vis[1] - s_vis[0])
        pts = []
        for i, t in enumerate(offs):
            s_i = s_a + sign * (t - offs[0]) / math.tan(alpha)
            if i > 0:
                if sign < 0:
                    L.s_range[i][0] = s_i
                else:
                    L.s_range[i][1] = s_i
                L.forbid[i].append((s_i - 25, s_i + 25))
            L.forbid[0].append((s_i - 20, s_i + 20))
        n = 40
        for k in range(n + 1):
            t = offs[0] + (offs[-1] - offs[0]) * k / n
            s = s_a + sign * (t - offs[0]) / math.tan(alpha)
            pts.append(tuple(float(v) for v in fr.xy(s, t)))
        L.extra_tracks.append(pts)
    # crossovers between neighbouring tracks
    for _ in range(spec.turnouts if len(offs) > 1 else 0):
        i = int(rng.integers(0, len(offs) - 1))
        gap = offs[i + 1] - offs[i]
        length = gap / math.tan(math.radians(6.3))
        s0 = rng.uniform(L.s_lo + 60, L.s_hi - 60 - length)
        sgn = rng.choice([-1, 1])
        a, b = (s0, offs[i]), (s0 + length, offs[i + 1])
        if sgn < 0:
            a, b = (s0, offs[i + 1]), (s0 + length, offs[i])
        pts = [tuple(float(v) for v in fr.xy(a[0] + (b[0] - a[0]) * k / 8, a[1] + (b[1] - a[1]) * k / 8))
               for k in range(9)]
        L.extra_tracks.append(pts)
        for j in (i, i + 1):
            L.forbid[j].append((s0 - 8, s0 + length + 8))
    # outward bands on both sides of the bundle: platforms, containers,
    # sheds, roads, parking; then buildings in what is left.
    L.objs, L.roads, L.lots, L.masts = [], [], [], []
    L.footprints = []          # (kind, polygon corners local) for lookalikes + occupancy
    side_edge = {1: half + 3.0, -1: -half - 3.0} if len(offs) else {1: 0.0, -1: 0.0}
    s_mid = (L.s_lo + L.s_hi) / 2

    def take(side, width):
        t0 = side_edge[side]
        side_edge[side] = t0 + side * width
        return t0 + side * width / 2.0        # centre offset

    def fits(s, t, length, width):
        x, y = fr.xy(s, t)
        r = 0.5 * math.hypot(length, width)
        return r < x < W - r and r < y < H - r

    sides = [1, -1]
    for _ in range(spec.platforms):
        side = sides[int(rng.integers(0, 2))]
        wdt = rng.uniform(4.0, 7.0)
        side_edge[side] += side * 0.0
        tc = take(side, wdt)
        ln = rng.uniform(120, 260)
        s = rng.uniform(s_mid - 0.2 * (L.s_hi - L.s_lo), s_mid + 0.2 * (L.s_hi - L.s_lo))
        x, y = fr.xy(s, tc)
        L.objs.append(_Obj("platform", float(x), float(y), fr.az(s), ln, wdt, 0.0,
                           _rgbn((0.40, 0.39, 0.37)), {"edge": side}))
        side_edge[side] += side * 2.0
    # containers: one band beside the bundle holding several stacks of
    # rows x bays along the track, 6 m or 12 m boxes, 1-3 tiers
    left = spec.containers
    if left > 0:
        side = sides[int(rng.integers(0, 2))]
        side_edge[side] += side * rng.uniform(4.0, 10.0)
        tc0 = side_edge[side] + side * 1.3
        span = L.s_hi - L.s_lo
        s_cur = s_mid - rng.uniform(0.15, 0.35) * span
        maxrows = 1
        guard = 0
        while left > 0 and guard < 200:
            guard += 1
            nrows = int(rng.integers(1, 4))
            clen = 12.19 if rng.random() < 0.6 else 6.06
            gapb = rng.uniform(0.3, 1.2)
            nb = max(1, min(int(math.ceil(left / nrows)), int(rng.integers(2, 9))))
            maxrows = max(maxrows, nrows)
            for r in range(nrows):
                tc = tc0 + side * r * (2.44 + rng.uniform(0.1, 0.35))
                for b in range(nb):
                    if left <= 0:
                        break
                    sb = s_cur + b * (clen + gapb) + clen / 2
                    if not fits(sb, tc, clen, 2.44):
                        continue
                    x, y = fr.xy(sb, tc)
                    tiers = int(rng.integers(1, 4))
                    col = _CONTAINER[int(rng.integers(0, len(_CONTAINER)))]
                    L.objs.append(_Obj("container", float(x), float(y), fr.az(sb), clen, 2.44,
                                       2.6 * tiers, _rgbn(_muted(col, 0.6)), {"tiers": tiers}))
                    left -= 1
            s_cur += nb * (clen + gapb) + rng.uniform(4.0, 15.0)
            if s_cur > L.s_hi:
                # next band further out
                side_edge[side] = tc0 + side * (maxrows * 2.7 + rng.uniform(5.0, 9.0))
                tc0 = side_edge[side] + side * 1.3
                s_cur = L.s_lo + rng.uniform(0, 30)
                maxrows = 1
        side_edge[side] = tc0 + side * (maxrows * 2.7)
    for _ in range(spec.sheds):
        side = sides[int(rng.integers(0, 2))]
        wdt = rng.uniform(6.0, 12.0)
        side_edge[side] += side * rng.uniform(4.0, 10.0)
        tc = take(side, wdt)
        ln = rng.uniform(40, 130)
        s = rng.uniform(s_mid - 0.25 * (L.s_hi - L.s_lo), s_mid + 0.25 * (L.s_hi - L.s_lo))
        x, y = fr.xy(s, tc)
        col = _ROOF[int(rng.integers(0, len(_ROOF)))]
        L.objs.append(_Obj("shed", float(x), float(y), fr.az(s), ln, wdt, rng.uniform(5, 8),
                           _rgbn(col), {"gable": bool(rng.random() < 0.7)}))
    for k in range(spec.roads):
        side = sides[k % 2]
        side_edge[side] += side * rng.uniform(8.0, 20.0)
        wdt = rng.uniform(7.0, 10.0)
        tc = take(side, wdt)
        L.roads.append({"t": tc, "w": wdt, "old": bool(rng.random() < 0.5)})
    # trucks on the roads, in lanes, both directions
    for k in range(spec.trucks if L.roads else 0):
        road = L.roads[k % len(L.roads)]
        lane = rng.choice([-1, 1]) * road["w"] / 4.0
        for _try in range(20):
            s = rng.uniform(L.s_lo + 30, L.s_hi - 30)
            ln = rng.uniform(8.0, 16.5)
            if fits(s, road["t"] + lane, ln, 2.5):
                break
        else:
            continue
        x, y = fr.xy(s, road["t"] + lane)
        L.objs.append(_truck(rng, float(x), float(y), fr.az(s) + (180 if lane < 0 else 0), ln))
    # parking: trailers side by side, like cars on neighbouring tracks
    if spec.truck_parking:
        side = sides[int(rng.integers(0, 2))]
        side_edge[side] += side * rng.uniform(6.0, 15.0)
        depth = rng.uniform(17, 20)
        tc = take(side, depth)
        n = spec.truck_parking
        pitch = rng.uniform(3.6, 4.4)
        s0 = s_mid - n * pitch / 2 + rng.uniform(-40, 40)
        lot_len = n * pitch + 8
        x, y = fr.xy(s0 + n * pitch / 2, tc)
        L.lots.append(_Obj("lot", float(x), float(y), fr.az(s0 + n * pitch / 2), lot_len,
                           depth + 4, 0.0, _rgbn((0.30, 0.30, 0.29)), {}))
        for i in range(n):
            s = s0 + (i + 0.5) * pitch
            ln = rng.uniform(12.0, 16.5)
            tt = tc + rng.uniform(-0.8, 0.8)
            if not fits(s, tt, ln, 2.5):
                continue
            x, y = fr.xy(s, tt)
            L.objs.append(_truck(rng, float(x), float(y), fr.az(s) + 90 + (180 if rng.random() < 0.5 else 0),
                                 ln, parked=True))
    L.side_edge = dict(side_edge)
    # catenary: masts in wide gaps and outside, gantries spanning the bundle
    if spec.catenary and len(offs):
        pitch = rng.uniform(50, 65)
        tgaps = [offs[0] - 3.0, offs[-1] + 3.0] + [(offs[i - 1] + offs[i]) / 2 for i in wide]
        s = L.s_lo + rng.uniform(0, pitch)
        k = 0
        while s < L.s_hi:
            if k % 3 == 2:
                L.masts.append({"gantry": True, "s": s, "t0": offs[0] - 3.0, "t1": offs[-1] + 3.0})
            else:
                for tg in tgaps:
                    L.masts.append({"gantry": False, "s": s, "t": tg})
            s += pitch
            k += 1
    # buildings: random rectangles away from the yard corridor and the rest
    L.corridor = (side_edge[-1] - 4.0, side_edge[1] + 4.0)
    placed = 0
    tries = 0
    while placed < spec.buildings and tries < 400:
        tries += 1
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        s, t = fr.st(np.array(x), np.array(y))
        bl, bw = rng.uniform(12, 60), rng.uniform(10, 30)
        r = 0.5 * math.hypot(bl, bw)
        if L.corridor[0] - r < float(t) < L.corridor[1] + r:
            continue
        if any(math.hypot(o.cx - x, o.cy - y) < r + 0.5 * math.hypot(o.length, o.width) + 4
               for o in L.objs if o.kind == "building"):
            continue
        az = (fr.az(float(s)) + (90 if rng.random() < 0.3 else 0) + rng.uniform(-3, 3)) % 180
        col = _ROOF[int(rng.integers(0, len(_ROOF)))]
        L.objs.append(_Obj("building", x, y, az, bl, bw, rng.uniform(4, 14), _rgbn(col),
                           {"gable": bool(rng.random() < 0.4)}))
        placed += 1
    # trees: clumps and rows along roads, off the yard corridor
    ntree = spec.trees if spec.trees >= 0 else int(150 * W * H / 1e6)
    L.parcel_az = rng.uniform(0, 90)
    placed, tries = 0, 0
    tcol = np.array(_TREE.get(spec.season, _TREE["summer"]), np.float32)
    while placed < ntree and tries < ntree * 6:
        tries += 1
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        n = int(rng.integers(1, 9))
        for _ in range(n):
            x, y = cx + rng.normal(0, 9), cy + rng.normal(0, 9)
            r = rng.uniform(2.5, 5.0)
            _, t = fr.st(np.array(x), np.array(y))
            if L.corridor[0] - r - 2 < float(t) < L.corridor[1] + r + 2:
                continue
            if any(abs(o.cx - x) < o.length / 2 + r + 6 and abs(o.cy - y) < o.length / 2 + r + 6
                   for o in L.objs if o.kind == "building"):
                continue
            L.objs.append(_Obj("tree", float(x), float(y), 0.0, 2 * r, 2 * r, rng.uniform(5, 12),
                               tcol * rng.uniform(0.8, 1.2), {"seed": int(rng.integers(0, 2 ** 31))}))
            placed += 1
    # nodata collar: skewed half-planes along the left and top edges
    L.nodata = []
    if spec.nodata_edge > 0:
        for edge in ("left", "top"):
            d1 = spec.nodata_edge * rng.uniform(0.5, 1.0)
            d0 = spec.nodata_edge * rng.uniform(0.0, 0.3)
            if edge == "left":
                a, b = (d1 * W, 0.0), (d0 * W, H)
            else:
                a, b = (W, d0 * H), (0.0, d1 * H)
            L.nodata.append((a, b))
    return L


def _truck(rng, x, y, az, ln, parked=False):
    trailer = rng.choice(["box", "box", "container", "tanker", "flatbed"])
    if trailer == "container":
        col = _CONTAINER[int(rng.integers(0, len(_CONTAINER)))]
    elif trailer == "tanker":
        col = _BODY[rng.choice(["silver", "white", "grey"])]
    elif trailer == "flatbed":
        col = (0.18, 0.16, 0.14)
    else:
        col = _BODY[rng.choice(["white", "white", "silver", "blue", "red", "grey", "green"])]
    cab = _BODY[rng.choice(["white", "red", "blue", "grey", "dark", "yellow"])]
    has_cab = (not parked) or rng.random() < 0.4
    return _Obj("truck", x, y, az % 360, ln, 2.5, 3.8 if trailer != "flatbed" else 1.6,
                _rgbn(_muted(col)), {"cab": _rgbn(_muted(cab)), "has_cab": has_cab, "trailer": trailer})


def _usable(L, spec, i):
    """Intervals of track i where a car may stand (inside the raster, not on
    turnouts, not under the nodata collar)."""
    lo, hi = L.s_range[i]
    iv = [(lo, hi)]
    for f0, f1 in sorted(L.forbid[i]):
        nv = []
        for a, b in iv:
            if f1 <= a or f0 >= b:
                nv.append((a, b))
            else:
                if f0 > a:
                    nv.append((a, f0))
                if f1 < b:
                    nv.append((f1, b))
        iv = nv
    return [(a, b) for a, b in iv if b - a > 12]


def _inside(L, spec, pts, margin=1.0):
    for x, y in pts:
        if not (margin < x < L.W - margin and margin < y < L.H - margin):
            return False
        for (ax, ay), (bx, by) in L.nodata:
            # nodata lies left of a->b (towards the corner)
            if (bx - ax) * (y - ay) - (by - ay) * (x - ax) > -margin * math.hypot(bx - ax, by - ay):
                return False
    return True


def _car_length(rng, ctype):
    if ctype == "locomotive":
        return rng.uniform(17.5, 21.5)
    if ctype == "tank":
        return rng.uniform(11.0, 13.5) if rng.random() < 0.55 else rng.uniform(16.5, 19.5)
    if ctype == "open":
        return rng.uniform(12.3, 13.8) if rng.random() < 0.7 else rng.uniform(14.5, 17.0)
    if ctype == "box":
        return rng.uniform(14.0, 16.8) if rng.random() < 0.5 else rng.uniform(18.0, 20.2)
    if ctype == "flat":
        return rng.uniform(13.0, 14.8) if rng.random() < 0.5 else rng.uniform(18.0, 19.8)
    if ctype == "covered":
        return rng.uniform(12.3, 14.5) if rng.random() < 0.6 else rng.uniform(16.0, 19.0)
    r = rng.random()
    if r < 0.55:
        return float(np.clip(rng.normal(14.2, 1.0), 11.5, 16.5))
    if r < 0.9:
        return float(np.clip(rng.normal(19.0, 0.6), 17.5, 20.8))
    return rng.uniform(10.0, 23.0)


def _car_look(rng, ctype):
    """Colour and drawing style of one car."""
    st = {}
    if ctype == "box":
        name = _BOX_COLOURS[int(rng.integers(0, len(_BOX_COLOURS)))]
        col = _BODY[name]
        st["board"] = rng.choice([0.6, 1.45, 0.8])
        st["hatches"] = bool(rng.random() < 0.3)
        h = rng.uniform(4.2, 4.7)
    elif ctype == "tank":
        col = _BODY[_TANK_COLOURS[int(rng.integers(0, len(_TANK_COLOURS)))]]
        h = rng.uniform(4.0, 4.5)
    elif ctype == "open":
        col = _BODY[_OPEN_COLOURS[int(rng.integers(0, len(_OPEN_COLOURS)))]]
        st["load"] = rng.choice(list(_LOADS), p=[0.22, 0.22, 0.12, 0.12, 0.12, 0.2])
        h = rng.uniform(3.4, 3.8)
    elif ctype == "flat":
        col = rng.choice([(0.17, 0.14, 0.12), (0.24, 0.21, 0.19), (0.12, 0.11, 0.11)])
        st["cargo"] = rng.choice(["none", "containers", "timber", "machine", "pipes"],
                                 p=[0.35, 0.3, 0.15, 0.1, 0.1])
        st["ccol"] = _CONTAINER[int(rng.integers(0, len(_CONTAINER)))]
        st["ccol2"] = _CONTAINER[int(rng.integers(0, len(_CONTAINER)))]
        h = {"none": 1.3, "containers": 4.0, "timber": 3.5, "machine": 3.8, "pipes": 2.5}[st["cargo"]]
    elif ctype == "covered":
        col = _TARP[int(rng.integers(0, len(_TARP)))]
        st["folds"] = rng.uniform(0.5, 1.0, size=6)
        h = rng.uniform(3.8, 4.4)
    else:   # locomotive
        col = _BODY[rng.choice(["red", "blue", "green", "dark", "yellow", "grey", "teal"])]
        st["cab_end"] = rng.choice([-1, 1])
        h = rng.uniform(4.6, 5.0)
    st["seed"] = int(rng.integers(0, 2 ** 31))
    st["tone"] = rng.uniform(0.85, 1.15)
    return np.array(_rgbn(_muted(tuple(np.clip(np.array(col) * st["tone"], 0, 0.8))))), st, h


def _place_cars(spec, L):
    """Trains and single cars on the bundle. Returns [_Obj] (cars first by
    placement order). Exactly ``spec.n_cars`` freight cars when it fits."""
    cseed = spec.seed if spec.cars_seed is None else spec.cars_seed
    rng = np.random.default_rng([int(cseed), 23, int(spec.seed)])
    mix = spec.car_mix or DEFAULT_MIX
    types = [t for t in mix if mix[t] > 0]
    probs = np.array([mix[t] for t in types], float)
    probs /= probs.sum()
    # free intervals per track
    free = []
    total = 0.0
    for i in range(len(L.t_tracks)):
        for a, b in _usable(L, spec, i):
            free.append([i, a, b])
            total += b - a
    if spec.n_cars is not None:
        target = int(spec.n_cars)
        budget = None
    else:
        target = None
        budget = spec.occupancy * total
    cars, used, nfreight, train_id = [], 0.0, 0, 0
    fails = 0
    while free and fails < 60:
        if target is not None and nfreight >= target:
            break
        if budget is not None and used >= budget:
            break
        k = int(rng.integers(0, len(free)))
        i, a, b = free[k]
        if b - a < 14:
            free.pop(k)
            continue
        single = rng.random() < spec.single_car_rate
        ncar = 1 if single else int(rng.integers(3, 40))
        if target is not None:
            ncar = min(ncar, target - nfreight)
        unit = rng.random() < 0.6
        utype = types[int(rng.choice(len(types), p=probs))]
        ulen = _car_length(rng, utype)
        ulook = _car_look(rng, utype)
        loco = (not single) and ncar >= 4 and rng.random() < spec.locomotive_rate
        # start somewhere in the interval, leaving a gap to neighbours
        start = rng.uniform(a + 1.5, max(a + 1.6, b - 20)) if rng.random() < 0.6 else a + rng.uniform(1.5, 8)
        s = start
        seq = []
        if loco and rng.random() < 0.5:
            seq.append("locomotive")
        seq += ["freight"] * ncar
        if loco and "locomotive" not in seq:
            seq.append("locomotive")
        placed_any = False
        t = L.t_tracks[i]
        for kind in seq:
            if kind == "locomotive":
                ctype = "locomotive"
                ln = _car_length(rng, ctype)
                look = _car_look(rng, ctype)
            else:
                if unit:
                    ctype = utype
                    ln = float(np.clip(ulen + rng.normal(0, 0.08), 9.5, 23.5))
                    look = (ulook[0] * rng.uniform(0.93, 1.07), dict(ulook[1], seed=int(rng.integers(0, 2 ** 31))),
                            ulook[2])
                    if ctype == "open" and rng.random() < 0.3:
                        look[1]["load"] = rng.choice(list(_LOADS))
                    if ctype == "flat" and rng.random() < 0.4:
                        look[1]["cargo"] = rng.choice(["none", "containers", "timber"])
                else:
                    ctype = types[int(rng.choice(len(types), p=probs))]
                    ln = _car_length(rng, ctype)
                    look = _car_look(rng, ctype)
            if s + ln + 0.5 > b:
                break
            if target is not None and kind == "freight" and nfreight >= target:
                break
            sc = s + ln / 2
            x, y = L.frame.xy(sc, t)
            az = L.frame.az_full(sc)
            wd = float(np.clip(rng.normal(3.0 if ctype != "tank" else 2.95, 0.13), 2.6, 3.3))
            if ctype == "locomotive":
                wd = float(np.clip(rng.normal(3.1, 0.08), 2.9, 3.3))
            pts = _rect(float(x), float(y), az, ln, wd)
            if not _inside(L, spec, pts, margin=1.0):
                s += ln + rng.uniform(1.0, 1.5)
                if placed_any:
                    break
                continue
            col, st, h = look
            st = dict(st)
            if rng.random() < 0.5:
                az = (az + 180) % 360          # cars face either way
            gx, gy = float(x), float(y)
            if spec.off_nadir_deg > 0:
                # off-nadir view: the roof (what the analyst outlines) is seen
                # displaced away from the satellite; the shadow stays put
                lean = h * math.tan(math.radians(spec.off_nadir_deg))
                va = math.radians(spec.view_azimuth)
                x, y = gx - math.sin(va) * lean, gy + math.cos(va) * lean
                st["ground"] = (gx, gy)
                if not _inside(L, spec, _rect(float(x), float(y), az, ln, wd), margin=1.0):
                    s += ln + rng.uniform(1.0, 1.5)
                    if placed_any:
                        break
                    continue
            cars.append(_Obj("car", float(x), float(y), az, ln, wd, h, np.array(col, np.float32), st,
                             ctype=ctype, train=train_id))
            placed_any = True
            used += ln + 1.25
            if ctype != "locomotive":
                nfreight += 1
            s += ln + rng.uniform(1.0, 1.5)
        if placed_any:
            train_id += 1
            # the interval shrinks: the part before start stays free
            fails = 0
            free.pop(k)
            if start - 3 - a > 14:
                free.append([i, a, start - 3])
            if b - (s + 3) > 14:
                free.append([i, s + 3, b])
        else:
            fails += 1
            if b - start < 20:
                free.pop(k)
    return cars


def _clouds(spec, L):
    rng = np.random.default_rng([int(spec.cars_seed if spec.cars_seed is not None else spec.seed), 31])
    puffs = []
    if spec.clouds <= 0:
        return puffs
    area = L.W * L.H
    covered = 0.0
    while covered < spec.clouds * area and len(puffs) < 4000:
        cx, cy = rng.uniform(0, L.W), rng.uniform(0, L.H)
        rad = rng.uniform(25, 80) * max(1.0, math.sqrt(area) / 1000)
        n = int(rng.integers(6, 20))
        for _ in range(n):
            a = rng.uniform(0, 2 * math.pi)
            d = rng.uniform(0, rad)
            puffs.append((cx + d * math.cos(a), cy + d * math.sin(a), rng.uniform(0.35, 0.8) * rad,
                          rng.uniform(0.6, 1.6)))
        covered += math.pi * (rad * 1.5) ** 2
    return puffs


def _cloud_alpha(puffs, xs, ys, seed):
    """Cloud opacity on the grid xs x ys (metres). Soft, bright, textured."""
    dens = np.zeros((len(ys), len(xs)), np.float32)
    if not puffs:
        return dens
    x0, x1, y0, y1 = xs[0], xs[-1], ys[0], ys[-1]
    for cx, cy, r, a in puffs:
        if cx + 3 * r < x0 or cx - 3 * r > x1 or cy + 3 * r < y0 or cy - 3 * r > y1:
            continue
        gx = np.exp(-0.5 * ((xs - cx) / r) ** 2).astype(np.float32)
        gy = np.exp(-0.5 * ((ys - cy) / r) ** 2).astype(np.float32)
        dens += a * np.outer(gy, gx)
    tex = 0.75 + 0.3 * _value_noise(xs, ys, 40.0, seed + 5) + 0.2 * _value_noise(xs, ys, 9.0, seed + 6)
    return (1.0 - np.exp(-1.2 * dens * tex)).astype(np.float32)


# --------------------------------------------------------------------------- drawing
class _Tile:
    """Fine-resolution canvas covering local metres [x0, x0 + w*f) x [y0, ...)."""

    def __init__(self, x0, y0, w, h, f):
        self.x0, self.y0, self.w, self.h, self.f = x0, y0, w, h, f
        self.img = np.zeros((4, h, w), np.float32)
        self.shadow = np.zeros((h, w), np.float32)
        self.xc = x0 + (np.arange(w) + 0.5) * f
        self.yc = y0 + (np.arange(h) + 0.5) * f

    def patch(self, bx0, by0, bx1, by1):
        f = self.f
        j0 = max(int(math.floor((bx0 - self.x0) / f)), 0)
        j1 = min(int(math.ceil((bx1 - self.x0) / f)), self.w)
        i0 = max(int(math.floor((by0 - self.y0) / f)), 0)
        i1 = min(int(math.ceil((by1 - self.y0) / f)), self.h)
        if j0 >= j1 or i0 >= i1:
            return None
        return (slice(i0, i1), slice(j0, j1)), self.xc[j0:j1][None, :], self.yc[i0:i1][:, None]


def _local_uv(X, Y, cx, cy, az):
    a = math.radians(az)
    ux, uy = math.sin(a), -math.cos(a)
    dx, dy = X - cx, Y - cy
    return dx * ux + dy * uy, dx * math.cos(a) + dy * math.sin(a)


def _convex_cov(X, Y, poly, f):
    """Anti-aliased coverage of a convex polygon (counter-clockwise or not)."""
    n = len(poly)
    area = sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n))
    sgn = 1.0 if area > 0 else -1.0
    sd = None
    for i in range(n):
        (ax, ay), (bx, by) = poly[i], poly[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        ln = math.hypot(ex, ey) or 1.0
        d = sgn * ((X - ax) * ey - (Y - ay) * ex) / ln * -1.0
        sd = d if sd is None else np.minimum(sd, d)
    return np.clip(0.5 + sd / f, 0.0, 1.0)


def _blend(tile, sl, cov, col):
    """img = img*(1-cov) + col*cov; col is (4,) or (4,h,w)."""
    img = tile.img[:, sl[0], sl[1]]
    if col.ndim == 1:
        col = col[:, None, None]
    img += cov[None] * (col - img)


class _Sun:
    def __init__(self, az, el):
        self.az, self.el = az, max(el, 3.0)
        a, e = math.radians(az), math.radians(self.el)
        self.dir = (-math.sin(a), math.cos(a))           # shadow direction (x east, y south)
        self.tan = math.tan(e)
        self.sin = math.sin(e)
        self.cos = math.cos(e)
        self.diffuse = 0.33
        self.shadow_factor = self.diffuse / (self.sin + self.diffuse)

    def local(self, car_az):
        """Sun components along (u) and across (v) an object, and vertical."""
        d = math.radians(self.az - car_az)
        return self.cos * math.cos(d), self.cos * math.sin(d), self.sin

    def shade(self, nu, nv, nz, car_az):
        su, sv, sz = self.local(car_az)
        lam = np.maximum(nu * su + nv * sv + nz * sz, 0.0)
        return (self.diffuse + lam) / (self.diffuse + sz)


def _shadow_poly(obj, sun, height=None):
    h = obj.height if height is None else height
    d = h / sun.tan
    ox, oy = sun.dir[0] * d, sun.dir[1] * d
    if obj.kind == "tree":     # a crown: shadow of a disc lifted to the crown height
        r = obj.length / 2
        pts = [(obj.cx + r * math.cos(a), obj.cy + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 13)[:-1]]
        d0 = 0.0
        return _hull([(x + sun.dir[0] * d0, y + sun.dir[1] * d0) for x, y in pts] +
                     [(x + ox, y + oy) for x, y in pts]), d
    gx, gy = obj.style.get("ground", (obj.cx, obj.cy)) if obj.style else (obj.cx, obj.cy)
    pts = _rect(gx, gy, obj.az, obj.length, obj.width)
    return _hull(pts + [(x + ox, y + oy) for x, y in pts]), d


def _draw_shadow(tile, obj, sun):
    poly, d = _shadow_poly(obj, sun)
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    p = tile.patch(min(xs), min(ys), max(xs), max(ys))
    if p is None:
        return
    sl, X, Y = p
    cov = _convex_cov(X, Y, poly, tile.f)
    sh = tile.shadow[sl]
    np.maximum(sh, cov, out=sh)


def _noise_local(U, V, seed, scale):
    """Cheap object-attached texture in [0,1): hashed lattice of U, V."""
    iu = np.floor(U / scale).astype(np.int64)
    iv = np.floor(V / scale).astype(np.int64)
    return _hash_u32(iu, iv, np.full(np.broadcast(iu, iv).shape, seed))


def _draw_car(tile, car, sun):
    f = tile.f
    ground = car.style.get("ground")
    if ground is not None:
        # the side wall facing the satellite, between footprint and roof
        poly = _hull(_rect(ground[0], ground[1], car.az, car.length, car.width) +
                     _rect(car.cx, car.cy, car.az, car.length, car.width))
        xs_, ys_ = [q[0] for q in poly], [q[1] for q in poly]
        p = tile.patch(min(xs_), min(ys_), max(xs_), max(ys_))
        if p is not None:
            sl, X, Y = p
            cov = _convex_cov(X, Y, poly, f)
            wall = car.colour * 0.55 if car.ctype != "flat" else _rgbn((0.06, 0.06, 0.06))
            _blend(tile, sl, cov, wall)
            tile.shadow[sl] *= (1 - cov)
    bx = car.bbox(0.5)
    p = tile.patch(*bx)
    if p is None:
        return
    sl, X, Y = p
    U, V = _local_uv(X, Y, car.cx, car.cy, car.az)
    hl, hw = car.length / 2, car.width / 2
    st = car.style
    col = car.colour
    t = car.ctype
    az = car.az
    ones = np.ones(np.broadcast(U, V).shape, np.float32)
    if t == "tank":
        # underframe and walkways at the ends, then the cylinder
        cov_frame = _band(U, hl, f) * _band(V, hw * 0.85, f)
        _blend(tile, sl, cov_frame, _rgbn((0.07, 0.07, 0.07)))
        tl = hl - 0.9
        r = hw
        # rounded heads: ellipse-like ends
        uu = np.maximum(np.abs(U) - (tl - r * 0.5), 0.0) / (r * 0.5)
        vv = V / r
        rr = np.sqrt(uu ** 2 + vv ** 2)
        cov = np.clip(0.5 + (1.0 - rr) * r / f, 0, 1) * _band(U, tl, f)
        nv = np.clip(vv, -0.999, 0.999)
        nz = np.sqrt(1 - nv ** 2)
        nu = np.sign(U) * np.clip(uu, 0, 0.95)
        nz = nz * np.sqrt(1 - nu ** 2)
        sh = sun.shade(nu, nv, nz, az)
        su, sv, sz = sun.local(az)
        spec = 0.35 * np.exp(-((V - sv / max(sz + 1e-3, 0.3) * 0.35 * r) / 0.22) ** 2) * (nz > 0.5)
        c = col[:, None, None] * sh[None] * (0.75 + 0.25 * nz[None]) + spec[None] * (0.25 + col[:, None, None])
        # dome and walkway in the middle
        dome = _band(U, 0.5, f) * _band(V, 0.5, f)
        c = c * (1 - 0.35 * dome[None]) + 0.0
        _blend(tile, sl, cov * ones, c)
        return
    body = _band(U, hl, f) * _band(V, hw, f)
    if t == "box":
        nv = np.clip(V / (hw * 4.0), -0.5, 0.5)     # slightly crowned roof
        sh = sun.shade(0.0, nv, np.sqrt(1 - nv ** 2), az)
        c = col[:, None, None] * sh[None]
        seams = 1 - 0.08 * _band(np.mod(U + hl, 1.2) - 0.6, 0.05, f)
        c = c * seams[None]
        board = _band(V, 0.28, f) * _band(U, hl - 0.4, f)
        bcol = np.clip(col * st.get("board", 0.7), 0, 0.85)
        c = c + board[None] * (bcol[:, None, None] - c)
        if st.get("hatches"):
            hat = _band(np.mod(U + hl, 3.0) - 1.5, 0.45, f) * _band(V, 0.5, f) * _band(U, hl - 1, f)
            c = c * (1 - 0.3 * hat[None])
        ends = 1 - 0.25 * (_band(np.abs(U) - hl + 0.15, 0.15, f))
        c = c * ends[None]
        _blend(tile, sl, body, c)
    elif t == "open":
        rim = 0.22
        inner = _band(U, hl - rim, f) * _band(V, hw - rim, f)
        rcol = np.clip(col * 1.5 + 0.05, 0, 0.85)
        _blend(tile, sl, body, rcol)
        load = st.get("load", "empty")
        su, sv, sz = sun.local(az)
        if load == "empty" or _LOADS.get(load) is None:
            # floor mostly in the shadow of the sun-side wall
            wall = 2.2 / sun.tan
            lit_v = (V * math.copysign(1.0, -sv) + (hw - rim)) > wall * abs(sv) / max(sun.cos, 1e-3)
            lit_u = (U * math.copysign(1.0, -su) + (hl - rim)) > wall * abs(su) / max(sun.cos, 1e-3)
            lit = (lit_u & lit_v).astype(np.float32)
            floor = col * 0.7
            c = floor[:, None, None] * (sun.shadow_factor + (1 - sun.shadow_factor) * lit[None])
            ribs = 1 - 0.15 * _band(np.mod(U + hl, 1.6) - 0.8, 0.06, f)
            _blend(tile, sl, inner, c * ribs[None])
        else:
            lcol = _rgbn(_muted(_LOADS[load], 0.6))
            rnd = np.random.default_rng(st["seed"])
            npk = max(2, int(car.length / 3.2))
            pk = np.linspace(-hl + 2, hl - 2, npk) + rnd.uniform(-0.6, 0.6, npk)
            hgt = np.zeros(np.broadcast(U, V).shape, np.float32)
            for p_ in pk:
                hgt = np.maximum(hgt, 0.9 - 0.35 * np.abs(U - p_) - 0.5 * np.abs(V))
            tex = _noise_local(U, V, st["seed"], 0.35)
            gu = np.gradient(hgt, axis=1) / f if hgt.shape[1] > 1 else hgt * 0
            gv = np.gradient(hgt, axis=0) / f if hgt.shape[0] > 1 else hgt * 0
            # gradients are in pixel axes; use a rough isotropic slope shading
            a = math.radians(sun.az)
            sx, sy = math.sin(a) * sun.cos, -math.cos(a) * sun.cos
            lam = np.clip((-gu * sx - gv * sy) * 0.6 + sun.sin, 0, None)
            sh = (sun.diffuse + lam) / (sun.diffuse + sun.sin)
            c = lcol[:, None, None] * (sh * (0.8 + 0.4 * tex))[None]
            _blend(tile, sl, inner, c)
    elif t == "flat":
        _blend(tile, sl, body, col)
        cargo = st.get("cargo", "none")
        if cargo == "containers":
            if car.length > 16.5 and st["seed"] % 2:
                for off, cc in ((-car.length / 4, st["ccol"]), (car.length / 4, st["ccol2"])):
                    cv = _band(U - off, 3.0, f) * _band(V, 1.22, f)
                    c = _rgbn(_muted(cc))[:, None, None] * (1 - 0.1 * _band(np.mod(U, 0.5) - 0.25, 0.06, f))[None]
                    _blend(tile, sl, cv, c)
            else:
                cl = min(6.1, hl - 0.5) if car.length < 16.5 else 6.1
                cv = _band(U, cl, f) * _band(V, 1.22, f)
                c = _rgbn(_muted(st["ccol"]))[:, None, None] * (1 - 0.1 * _band(np.mod(U, 0.5) - 0.25, 0.06, f))[None]
                _blend(tile, sl, cv, c)
        elif cargo == "timber":
            tex = _noise_local(U * 0.1, V, st["seed"], 0.25)
            cv = _band(U, hl - 0.6, f) * _band(V, hw - 0.15, f)
            c = _rgbn((0.42, 0.33, 0.21))[:, None, None] * (0.75 + 0.5 * tex)[None]
            _blend(tile, sl, cv, c)
        elif cargo == "machine":
            cv = _band(U, min(3.5, hl - 1), f) * _band(V, hw - 0.3, f)
            _blend(tile, sl, cv, _rgbn((0.50, 0.41, 0.07)))
            cv = _band(U - 1.0, 1.0, f) * _band(V, 0.8, f)
            _blend(tile, sl, cv, _rgbn((0.12, 0.12, 0.13)))
        elif cargo == "pipes":
            cv = _band(U, hl - 0.5, f) * _band(V, hw - 0.3, f)
            stripes = 0.75 + 0.35 * np.cos(2 * math.pi * V / 0.5)
            _blend(tile, sl, cv, _rgbn((0.35, 0.33, 0.31))[:, None, None] * stripes[None])
    elif t == "covered":
        folds = st.get("folds", np.ones(6))
        w = np.zeros(np.broadcast(U, V).shape, np.float32)
        for k, a_ in enumerate(folds):
            w += a_ * np.sin(2 * math.pi * U / (0.9 + 0.45 * k) + k * 1.7 + V * (0.4 + 0.2 * k)) / (k + 1)
        tex = _noise_local(U, V, st["seed"], 0.4)
        nv = np.clip(V / (hw * 1.3), -0.95, 0.95)
        nu = 0.25 * w
        nz = np.sqrt(np.clip(1 - nv ** 2 - nu ** 2, 0.05, 1))
        sh = sun.shade(nu, nv, nz, az)
        ropes = 1 - 0.25 * _band(np.mod(U + hl, 1.7) - 0.85, 0.05, f)
        c = col[:, None, None] * (sh * ropes * (0.9 + 0.2 * tex))[None]
        # draped edges are ragged
        edge = hw - 0.1 * _noise_local(U, V * 0, st["seed"] + 1, 0.8)
        cov = _band(U, hl, f) * np.clip(0.5 + (edge - np.abs(V)) / f, 0, 1)
        _blend(tile, sl, cov, c)
    else:   # locomotive
        walk = _band(V, hw, f) * _band(U, hl, f)
        _blend(tile, sl, walk, _rgbn((0.22, 0.22, 0.22)))
        nv = np.clip(V / (hw * 2.5), -0.6, 0.6)
        sh = sun.shade(0.0, nv, np.sqrt(1 - nv ** 2), az)
        bodyc = _band(V, hw - 0.3, f) * _band(U, hl - 0.3, f)
        c = col[:, None, None] * sh[None]
        _blend(tile, sl, bodyc, c)
        ce = st.get("cab_end", 1)
        cab = _band(U - ce * (hl - 1.8), 1.4, f) * _band(V, hw - 0.35, f)
        _blend(tile, sl, cab, np.clip(col * 1.3 + 0.03, 0, 0.9))
        for k in range(3):
            fu = -ce * (hl - 3.0 - 1.8 * k)
            rr = np.hypot(U - fu, V)
            fan = np.clip(0.5 + (0.65 - rr) / f, 0, 1)
            _blend(tile, sl, fan, _rgbn((0.05, 0.05, 0.05)))
        rad = _band(U + ce * 1.5, 2.5, f) * _band(V, 0.9, f)
        _blend(tile, sl, rad * (0.6 + 0.4 * _band(np.mod(U, 0.4) - 0.2, 0.08, f)), _rgbn((0.12, 0.12, 0.13)))
        ex = _band(U - ce * 2.0, 0.4, f) * _band(V, 0.3, f)
        _blend(tile, sl, ex, _rgbn((0.03, 0.03, 0.03)))
        body = walk
    # grime and faded patches: no two cars of a unit train look alike
    dirt = 0.86 + 0.28 * _noise_local(U + 0.37, V + 0.21, st.get("seed", 0) + 3, 1.4)
    tile.img[:, sl[0], sl[1]] *= (1 + body * (dirt - 1))[None]
    # a car body hides the shadow painted below it
    tile.shadow[sl] *= (1 - body)


def _draw_box_obj(tile, o, sun):
    """Trucks, containers, sheds, buildings, platforms."""
    f = tile.f
    p = tile.patch(*o.bbox(0.5))
    if p is None:
        return
    sl, X, Y = p
    U, V = _local_uv(X, Y, o.cx, o.cy, o.az)
    hl, hw = o.length / 2, o.width / 2
    cov = _band(U, hl, f) * _band(V, hw, f)
    if o.kind == "tree":
        r = o.length / 2
        rr = np.hypot(U, V)
        cov = np.clip(0.5 + (r * (0.9 + 0.15 * _noise_local(U, V, o.style["seed"], 0.8)) - rr) / f, 0, 1)
        nz = np.sqrt(np.clip(1 - (rr / r) ** 2, 0.05, 1))
        sh = sun.shade(U / r * 0.8, V / r * 0.8, nz, 0.0)
        tex = 0.7 + 0.6 * _noise_local(U, V, o.style["seed"] + 1, 0.6)
        _blend(tile, sl, cov, o.colour[:, None, None] * (sh * tex)[None])
        tile.shadow[sl] *= (1 - cov)
        return
    if o.kind == "truck":
        st = o.style
        if st["has_cab"]:
            cab_l = 2.4
            tr_l = o.length - cab_l - 0.6
            tr_c = -hl + tr_l / 2
            cab_c = hl - cab_l / 2
            cv = _band(U - cab_c, cab_l / 2, f) * _band(V, hw - 0.05, f)
            _blend(tile, sl, cv, st["cab"])
            win = _band(U - (hl - 0.25), 0.25, f) * _band(V, hw - 0.3, f)
            _blend(tile, sl, win, _rgbn((0.05, 0.06, 0.08)))
        else:
            tr_l, tr_c = o.length, 0.0
        cv = _band(U - tr_c, tr_l / 2, f) * _band(V, hw, f)
        if st["trailer"] == "tanker":
            nv = np.clip(V / hw, -0.99, 0.99)
            sh = sun.shade(0.0, nv, np.sqrt(1 - nv ** 2), o.az)
            c = o.colour[:, None, None] * sh[None]
        elif st["trailer"] == "flatbed":
            c = o.colour[:, None, None] * np.ones_like(U)[None]
        else:
            c = o.colour[:, None, None] * (1 - 0.06 * _band(np.mod(U, 0.6) - 0.3, 0.05, f))[None]
        _blend(tile, sl, cv, c)
        tile.shadow[sl] *= (1 - cov)
        return
    if o.kind == "container":
        ribs = 1 - 0.1 * _band(np.mod(U, 0.5) - 0.25, 0.06, f)
        edge = 1 - 0.3 * (1 - _band(U, hl - 0.12, f) * _band(V, hw - 0.1, f))
        c = o.colour[:, None, None] * (ribs * edge)[None]
        _blend(tile, sl, cov, c)
        tile.shadow[sl] *= (1 - cov)
        return
    if o.kind == "platform":
        tex = _noise_local(U, V, 77, 1.0)
        c = o.colour[:, None, None] * (0.92 + 0.12 * tex)[None]
        _blend(tile, sl, cov, c)
        side = o.style.get("edge", 1)
        line = _band(V + side * (hw - 0.5), 0.08, f) * _band(U, hl, f)
        _blend(tile, sl, line, _rgbn((0.60, 0.55, 0.25)))
        return
    # sheds and buildings: gabled roofs in two shaded halves, panel lines
    if o.style.get("gable"):
        nv = np.sign(V) * 0.25
        sh = sun.shade(0.0, nv, math.sqrt(1 - 0.25 ** 2), o.az)
        ridge = 1 - 0.15 * _band(V, 0.12, f)
        panels = 1 - 0.05 * _band(np.mod(U, 1.0) - 0.5, 0.04, f)
        c = o.colour[:, None, None] * (sh * ridge * panels)[None]
    else:
        tex = _noise_local(U, V, 13, 2.0)
        parapet = 1 + 0.15 * (1 - _band(U, hl - 0.35, f) * _band(V, hw - 0.35, f))
        c = o.colour[:, None, None] * ((0.94 + 0.1 * tex) * parapet)[None]
        if o.kind == "building":
            hv = _band(U - hl * 0.3, 1.0, f) * _band(V - hw * 0.3, 0.8, f)
            c = c * (1 - 0.4 * hv)[None]
    _blend(tile, sl, cov, c)
    tile.shadow[sl] *= (1 - cov)


def _track_pixels(px, S, V, gauge, wood, tone, polish, f, weeds=None, grass=None):
    """Ballast, sleepers and two rails on a list of pixels: px (4, n) colours,
    S along-track and V across-track offsets (n,). Returns new colours."""
    ball = np.clip((2.05 - np.abs(V)) / 0.55, 0, 1)
    ball = ball * ball * (3 - 2 * ball)
    tex = _noise_local(S, V, 5, 0.3)
    bcol = _rgbn((0.31, 0.30, 0.28))[:, None] * (tone * (0.88 + 0.24 * tex))[None]
    if weeds is not None and grass is not None and weeds.any():
        clump = np.clip((_noise_local(S * 0.5, V, 9, 0.7) - (1 - weeds)) * 3, 0, 1)
        bcol = bcol + clump[None] * (grass[:, None] - bcol)
    px = px + ball[None] * (bcol - px)
    # oily, rusty strip between the rails
    mid = _band(V, gauge / 2 - 0.05, f) * 0.45
    px *= (1 - mid[None] * np.array([0.35, 0.4, 0.45, 0.35], np.float32)[:, None])
    scol = np.where(wood[None], _rgbn((0.14, 0.12, 0.10))[:, None], _rgbn((0.40, 0.39, 0.37))[:, None])
    slp = _band(np.mod(S, 0.6) - 0.3, np.where(wood, 0.12, 0.13), f) * _band(V, 1.3, f) * 0.7
    px += slp[None] * (scol - px)
    d = np.abs(V) - (gauge / 2 + 0.036)
    rail = _band(d, 0.08, f)
    px += rail[None] * (_rgbn((0.06, 0.055, 0.05))[:, None] - px)
    head = _band(d, 0.025, f) * 0.8 * polish
    px += head[None] * (_rgbn((0.55, 0.55, 0.56))[:, None] - px)
    return px


def _draw_track_polyline(tile, pts, gauge=1.435, sleepers="concrete", tone=1.0, polish=True):
    f = tile.f
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        ln = math.hypot(bx - ax, by - ay)
        if ln <= 0:
            continue
        cx, cy = (ax + bx) / 2, (ay + by) / 2
        az = math.degrees(math.atan2(bx - ax, -(by - ay)))
        r = ln / 2 + 2.5
        p = tile.patch(cx - r, cy - r, cx + r, cy + r)
        if p is None:
            continue
        sl, X, Y = p
        U, V = _local_uv(X, Y, cx, cy, az)
        inside = (np.abs(U) <= ln / 2 + 0.02) & (np.abs(V) < 2.1)
        if not inside.any():
            continue
        ii, jj = np.nonzero(inside)
        ii += sl[0].start
        jj += sl[1].start
        n = len(ii)
        tile.img[:, ii, jj] = _track_pixels(tile.img[:, ii, jj], U[inside] + 1000.0, V[inside],
                                            np.full(n, gauge), np.full(n, sleepers == "wood"),
                                            np.full(n, tone, np.float32), np.full(n, polish), f)


def _draw_line(tile, a, b, width, col=None, shadow=False, value=1.0):
    """Thin straight line (gantry beams, mast arms) or its shadow."""
    f = tile.f
    (ax, ay), (bx, by) = a, b
    ln = math.hypot(bx - ax, by - ay)
    nseg = max(1, int(ln // 20) + 1)
    for k in range(nseg):
        p0 = (ax + (bx - ax) * k / nseg, ay + (by - ay) * k / nseg)
        p1 = (ax + (bx - ax) * (k + 1) / nseg, ay + (by - ay) * (k + 1) / nseg)
        sl_ = math.hypot(p1[0] - p0[0], p1[1] - p0[1])
        cx, cy = (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2
        az = math.degrees(math.atan2(p1[0] - p0[0], -(p1[1] - p0[1])))
        r = sl_ / 2 + width + f
        p = tile.patch(cx - r, cy - r, cx + r, cy + r)
        if p is None:
            continue
        sl, X, Y = p
        U, V = _local_uv(X, Y, cx, cy, az)
        cov = _band(U, sl_ / 2, f) * _band(V, width / 2, f) * value
        if shadow:
            m = tile.mast[sl]
            np.maximum(m, cov, out=m)
        else:
            _blend(tile, sl, cov, col)


# --------------------------------------------------------------------------- scene
class _Scene:
    def __init__(self, spec):
        self.spec = spec
        self.L = _build_layout(spec)
        self.cars = _place_cars(spec, self.L)
        self.sun = _Sun(spec.sun_azimuth, spec.sun_elevation)
        self.puffs = _clouds(spec, self.L)
        self.srs, self.ax, self.ay, self.X0, self.Y0 = _georef(spec, self.L.W, self.L.H)
        s = spec.supersample or int(min(4, max(1, round(spec.gsd_m / 0.25))))
        self.s = s
        self.f = spec.gsd_m / s
        self.objs = self.L.objs
        if self.puffs:
            for c in self.cars:
                pts = _rect(c.cx, c.cy, c.az, c.length, c.width) + [(c.cx, c.cy)]
                xs = np.array([p[0] for p in pts])
                ys = np.array([p[1] for p in pts])
                a = np.array([_cloud_alpha(self.puffs, np.array([x]), np.array([y]), spec.seed)[0, 0]
                              for x, y in zip(xs, ys)])
                c.hidden = bool(a.min() > 0.9)

    # georeferencing
    def to_map(self, x, y):
        return self.X0 + x * self.ax, self.Y0 - y * self.ay

    def geotransform(self):
        g = self.spec.gsd_m
        return (self.X0, g * self.ax, 0.0, self.Y0, 0.0, -g * self.ay)

    # background at output resolution (plus halo), metres grid xs, ys
    def background(self, xs, ys, xi, yi):
        spec, L = self.spec, self.L
        grass, soil = (np.array(c, np.float32) for c in _SEASON.get(spec.season, _SEASON["summer"]))
        seed = spec.seed
        n1 = _value_noise(xs, ys, 70.0, seed + 1)
        n2 = _value_noise(xs, ys, 18.0, seed + 2)
        n3 = _value_noise(xs, ys, 4.0, seed + 3)
        wn = np.random.default_rng([seed, 4, int(xi[0]) + 1000, int(yi[0]) + 1000]).random(
            (len(yi), len(xi)), dtype=np.float32)
        # field parcels on a rotated grid with wavy edges, plus rough ground
        a = math.radians(L.parcel_az)
        X, Y = xs[None, :], ys[:, None]
        pu = X * math.cos(a) + Y * math.sin(a) + 25.0 * (n2 - 0.5)
        pv = -X * math.sin(a) + Y * math.cos(a) + 25.0 * (n1 - 0.5)
        iu, iv = np.floor(pu / 110.0), np.floor(pv / 70.0)
        hv = _hash_u32(iu.astype(np.int64), iv.astype(np.int64), np.full(iu.shape, seed + 7, np.int64)) * 4
        cls = np.minimum(hv.astype(np.int64), 3)
        pal = np.array(_PARCELS.get(spec.season, _PARCELS["summer"]), np.float32)
        tone = 0.9 + 0.2 * (hv - cls)
        # furrows in ploughed parcels, hedges/dirt paths along parcel edges
        pu0 = X * math.cos(a) + Y * math.sin(a)
        furrow = np.where(cls == 3, 0.92 + 0.08 * np.cos(pu0 * (2 * math.pi / 2.2)), 1.0)
        eu = np.minimum(np.mod(pu, 110.0), 110.0 - np.mod(pu, 110.0))
        ev = np.minimum(np.mod(pv, 70.0), 70.0 - np.mod(pv, 70.0))
        edge = 0.5 * np.clip(1.2 - np.minimum(eu, ev), 0, 1)
        mod = (0.88 + 0.2 * n2 + 0.12 * (n3 - 0.5) + 0.08 * (wn - 0.5)) * tone * furrow
        img = np.empty((4,) + n1.shape, np.float32)
        grassc = pal[0]
        for c in range(4):
            img[c] = pal[:, c][cls] * mod
            img[c] += edge * (grassc[c] * 0.8 - img[c])
        if spec.snow > 0:
            field_ = 0.55 * n1 + 0.45 * n2
            snow = np.clip((spec.snow - field_) * 4 + 0.5, 0, 1) * (0.93 + 0.05 * n3 + 0.02 * wn)
            img += snow[None] * (np.array([0.58, 0.59, 0.62, 0.55], np.float32)[:, None, None] - img)
        X, Y = xs[None, :], ys[:, None]
        if len(L.t_tracks) or L.roads:
            S, T = L.frame.st(X, Y)
            tmin, tmax = float(T.min()), float(T.max())
            g = spec.gsd_m

            def near(t0, t1):            # skip features that miss this tile
                return t1 >= tmin - 3 and t0 <= tmax + 3
            if len(L.t_tracks) and near(*L.corridor):
                lo, hi = L.corridor
                yard = _band(T - (lo + hi) / 2, (hi - lo) / 2, max(g, 2.0))
                ycol = np.array([0.25, 0.23, 0.20, 0.27], np.float32)
                ytex = (0.85 + 0.3 * n3 + 0.1 * (wn - 0.5))
                img += yard[None] * (ycol[:, None, None] * ytex[None] - img)
                tb0, tb1 = L.t_tracks.min() - 3.5, L.t_tracks.max() + 3.5
                inner = _band(T - (tb0 + tb1) / 2, (tb1 - tb0) / 2, g)
                icol = np.array([0.22, 0.20, 0.18, 0.24], np.float32)
                img += inner[None] * (icol[:, None, None] * ytex[None] - img)
            for r in L.roads:
                if not near(r["t"] - r["w"], r["t"] + r["w"]):
                    continue
                cov = _band(T - r["t"], r["w"] / 2, g)
                acol = np.array([0.17, 0.17, 0.18, 0.17] if r["old"] else [0.10, 0.10, 0.11, 0.10], np.float32)
                img += cov[None] * (acol[:, None, None] * (0.92 + 0.16 * n3)[None] - img)
                dash = _band(T - r["t"], 0.07, g) * (np.mod(S, 9.0) < 3.0)
                img += dash[None] * (np.array([0.6, 0.6, 0.58, 0.5], np.float32)[:, None, None] - img)
                for e in (-1, 1):
                    ln = _band(T - r["t"] - e * (r["w"] / 2 - 0.3), 0.06, g)
                    img += ln[None] * (np.array([0.55, 0.55, 0.53, 0.5], np.float32)[:, None, None] - img)
        return img.astype(np.float32)

    def render_tile(self, c0, r0, w, h):
        """Reflectance (4, h, w) for output pixels [r0, r0+h) x [c0, c0+w)."""
        spec, L, s, f, sun = self.spec, self.L, self.s, self.f, self.sun
        g = spec.gsd_m
        halo = int(math.ceil(3 * max(spec.blur, 0))) + 1 + (4 if spec.sharpen > 0 else 0)
        C0, R0, W_, H_ = c0 - halo, r0 - halo, w + 2 * halo, h + 2 * halo
        xi = np.arange(C0, C0 + W_)
        yi = np.arange(R0, R0 + H_)
        xs = (xi + 0.5) * g
        ys = (yi + 0.5) * g
        bg = self.background(xs, ys, xi, yi)
        tile = _Tile(C0 * g, R0 * g, W_ * s, H_ * s, f)
        tile.img.reshape(4, H_, s, W_, s)[:] = bg[:, :, None, :, None]
        del bg
        tile.mast = np.zeros((H_ * s, W_ * s), np.float32)
        x0, y0 = C0 * g, R0 * g
        x1, y1 = x0 + W_ * g, y0 + H_ * g
        self._draw_tracks(tile)
        for pts in L.extra_tracks:
            xs_ = [p[0] for p in pts]
            ys_ = [p[1] for p in pts]
            if max(xs_) < x0 - 5 or min(xs_) > x1 + 5 or max(ys_) < y0 - 5 or min(ys_) > y1 + 5:
                continue
            _draw_track_polyline(tile, pts)
        for lot in L.lots:
            p = tile.patch(*lot.bbox())
            if p is not None:
                sl, X, Y = p
                U, V = _local_uv(X, Y, lot.cx, lot.cy, lot.az)
                cov = _band(U, lot.length / 2, f) * _band(V, lot.width / 2, f)
                _blend(tile, sl, cov, lot.colour)
                lines = _band(np.mod(U, 4.0) - 2.0, 0.06, f) * cov * 0.7
                _blend(tile, sl, lines, _rgbn((0.6, 0.6, 0.58)))
        # nearby objects only
        margin = 40.0 / max(sun.tan, 0.05) * 0.25 + 30
        near = lambda o: (o.cx > x0 - margin - o.length and o.cx < x1 + margin + o.length and
                          o.cy > y0 - margin - o.length and o.cy < y1 + margin + o.length)
        objs = [o for o in self.objs if near(o)]
        cars = [c for c in self.cars if near(c)]
        for o in objs:
            if o.kind == "platform":
                _draw_box_obj(tile, o, sun)
        # shadows of everything standing, then the bodies on top
        for o in objs + cars:
            if o.height > 0:
                _draw_shadow(tile, o, sun)
        sf = np.array([sun.shadow_factor * 0.95, sun.shadow_factor, sun.shadow_factor * 1.2,
                       sun.shadow_factor * 0.9], np.float32)
        _apply_shadow(tile.img, tile.shadow, sf)
        tile.shadow[:] = 0          # reused below: bodies clear it
        for o in objs:
            if o.kind != "platform":
                _draw_box_obj(tile, o, sun)
        for c in cars:
            _draw_car(tile, c, sun)
        self._draw_couplers(tile, cars)
        self._draw_catenary(tile, x0, y0, x1, y1)
        _apply_shadow(tile.img, tile.mast, sf)
        self._draw_catenary(tile, x0, y0, x1, y1, bodies=True)
        # area-average to the output grid
        out = tile.img.reshape(4, H_, s, W_, s).mean(axis=(2, 4))
        del tile
        # clouds and haze at output resolution
        if self.puffs:
            a = _cloud_alpha(self.puffs, xs, ys, spec.seed)
            ccol = np.array([0.62, 0.63, 0.65, 0.60], np.float32)
            out += a[None] * (ccol[:, None, None] - out)
        if spec.haze > 0:
            hz = spec.haze * (0.75 + 0.5 * _value_noise(xs, ys, 300.0, spec.seed + 9))
            hcol = np.array([0.36, 0.40, 0.47, 0.30], np.float32)
            out += hz[None] * (hcol[:, None, None] - out)
        if spec.blur > 0:
            out = gauss_blur(out, spec.blur)
        if spec.sharpen > 0:
            # vendors sharpen (MTF compensation): bright/dark halos at edges
            out = out + spec.sharpen * (out - gauss_blur(out, 1.2))
        return out[:, halo:halo + h, halo:halo + w]

    def _draw_tracks(self, tile):
        L, f = self.L, tile.f
        if not len(L.t_tracks):
            return
        # crop to the rows/cols near the bundle, found on a coarse grid
        step = max(1, int(8.0 / f))
        xc, yc = tile.xc[::step][None, :], tile.yc[::step][:, None]
        _, T = L.frame.st(xc, yc)
        lo, hi = L.t_tracks.min() - 2.6 - step * f, L.t_tracks.max() + 2.6 + step * f
        m = (T > lo) & (T < hi)
        if not m.any():
            return
        rows = np.where(m.any(axis=1))[0]
        cols = np.where(m.any(axis=0))[0]
        i0, i1 = max(rows[0] * step - step, 0), min((rows[-1] + 2) * step, tile.h)
        j0, j1 = max(cols[0] * step - step, 0), min((cols[-1] + 2) * step, tile.w)
        X, Y = tile.xc[j0:j1][None, :], tile.yc[i0:i1][:, None]
        S, T = L.frame.st(X, Y)
        mids = (L.t_tracks[1:] + L.t_tracks[:-1]) / 2
        k = np.searchsorted(mids, T)
        V = T - L.t_tracks[k]
        rng_ = np.array(L.s_range)
        valid = (S >= rng_[k, 0]) & (S <= rng_[k, 1]) & (np.abs(V) < 2.1)
        if not valid.any():
            return
        ii, jj = np.nonzero(valid)
        kk = k[valid]
        px = tile.img[:, ii + i0, jj + j0]
        tile.img[:, ii + i0, jj + j0] = _track_pixels(
            px, S[valid], V[valid], L.gauges[kk], L.sleepers[kk] == "wood",
            L.ballast_tone[kk].astype(np.float32), L.rail_polish[kk], f, weeds=L.weeds[kk],
            grass=np.array(_PARCELS.get(self.spec.season, _PARCELS["summer"])[0], np.float32))

    def _draw_couplers(self, tile, cars):
        f = tile.f
        for a, b in zip(cars[:-1], cars[1:]):
            if a.train != b.train:
                continue
            d = math.hypot(b.cx - a.cx, b.cy - a.cy)
            gap = d - (a.length + b.length) / 2
            if not 0 < gap < 2.0:
                continue
            cx, cy = (a.cx + b.cx) / 2, (a.cy + b.cy) / 2
            p = tile.patch(cx - 2, cy - 2, cx + 2, cy + 2)
            if p is None:
                continue
            sl, X, Y = p
            az = math.degrees(math.atan2(b.cx - a.cx, -(b.cy - a.cy)))
            # coupler sits midway between the two body ends
            mx = a.cx + (b.cx - a.cx) * ((a.length / 2 + gap / 2) / d)
            my = a.cy + (b.cy - a.cy) * ((a.length / 2 + gap / 2) / d)
            U, V = _local_uv(X, Y, mx, my, az)
            cov = _band(U, gap / 2 + 0.1, f) * _band(V, 0.2, f)
            _blend(tile, sl, cov, _rgbn((0.06, 0.06, 0.06)))

    def _draw_catenary(self, tile, x0, y0, x1, y1, bodies=False):
        L, sun = self.L, self.sun
        if not L.masts:
            return
        fr = L.frame
        for m in L.masts:
            if m["gantry"]:
                a = fr.xy(m["s"], m["t0"])
                b = fr.xy(m["s"], m["t1"])
                hgt = 8.0
                width = 0.35
            else:
                a = fr.xy(m["s"], m["t"])
                b = a
                hgt = 9.0
                width = 0.3
            a = (float(a[0]), float(a[1]))
            b = (float(b[0]), float(b[1]))
            d = hgt / sun.tan
            ox, oy = sun.dir[0] * d, sun.dir[1] * d
            r = max(abs(ox), abs(oy)) + 60
            if max(a[0], b[0]) < x0 - r or min(a[0], b[0]) > x1 + r or \
               max(a[1], b[1]) < y0 - r or min(a[1], b[1]) > y1 + r:
                continue
            if m["gantry"]:
                if bodies:
                    _draw_line(tile, a, b, width, _rgbn((0.32, 0.32, 0.33)))
                    for p_ in (a, b):
                        _draw_line(tile, (p_[0] - 0.3, p_[1]), (p_[0] + 0.3, p_[1]), 0.6, _rgbn((0.2, 0.2, 0.2)))
                else:
                    _draw_line(tile, (a[0] + ox, a[1] + oy), (b[0] + ox, b[1] + oy), width * 1.3, shadow=True,
                               value=0.85)
                    for p_ in (a, b):
                        _draw_line(tile, p_, (p_[0] + ox, p_[1] + oy), 0.4, shadow=True, value=0.85)
            else:
                # a mast with a cantilever arm reaching over the nearest track
                tt = m["t"]
                k = int(np.argmin(np.abs(L.t_tracks - tt)))
                arm = fr.xy(m["s"], L.t_tracks[k])
                arm = (float(arm[0]), float(arm[1]))
                if bodies:
                    _draw_line(tile, (a[0] - 0.2, a[1]), (a[0] + 0.2, a[1]), 0.4, _rgbn((0.18, 0.18, 0.18)))
                    _draw_line(tile, a, arm, 0.12, _rgbn((0.3, 0.3, 0.3)))
                else:
                    _draw_line(tile, a, (a[0] + ox, a[1] + oy), width, shadow=True, value=0.85)
                    d2 = 7.0 / sun.tan
                    _draw_line(tile, (a[0] + sun.dir[0] * d2, a[1] + sun.dir[1] * d2),
                               (arm[0] + sun.dir[0] * d2, arm[1] + sun.dir[1] * d2), 0.15, shadow=True, value=0.6)


def _apply_shadow(img, mask, sf):
    """Darken img where mask > 0, only over the rows/cols that have shadow."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return
    cols = np.flatnonzero(mask.any(axis=0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    img[:, sl[0], sl[1]] *= (1 - mask[sl][None] * (1 - sf[:, None, None]))


# --------------------------------------------------------------------------- products
def _radiometry(spec):
    """Per-scene white balance, tone curve and gain: products from different
    vendors and dates never share one colour rendition."""
    rng = np.random.default_rng([int(spec.seed), 51, int(spec.cars_seed or 0)])
    wb = (1.0 + rng.uniform(-0.07, 0.07, 4)).astype(np.float32)
    return wb, float(rng.uniform(0.85, 1.15)), float(rng.uniform(0.85, 1.12))


def _product(spec, refl, rng):
    """Reflectance (4: R,G,B,NIR) -> product bands as float DN before rounding."""
    wb, gamma, gain = _radiometry(spec)
    refl = gain * 0.35 * (np.clip(refl * wb[:, None, None], 0, None) / 0.35) ** gamma
    r, g, b, n = refl
    if spec.bands == "pan":
        bands = [0.22 * b + 0.3 * g + 0.3 * r + 0.18 * n]
    elif spec.bands == "bgrn":
        bands = [b, g, r, n]
    elif spec.bands == "rgbn":
        bands = [r, g, b, n]
    else:
        bands = [r, g, b]
    x = np.stack(bands).astype(np.float32)
    if spec.noise > 0:
        # shot noise grows with the signal, plus a read-noise floor
        sig = spec.noise * (0.5 + 1.2 * np.sqrt(np.clip(x, 0, None)))
        x = x + rng.standard_normal(x.shape, dtype=np.float32) * sig
    if spec.dtype == "uint8":
        return x * 400.0, 1.0, 255.0
    if spec.dtype == "uint16":
        full = 2 ** int(spec.bit_depth) - 1
        return x * (full * 0.95) + 40.0, 1.0, float(full)
    return x, None, None          # float32 reflectance


def _write_truth(scene, path, truth):
    spec, L = scene.spec, scene.L
    feats = []
    for k, t in enumerate(truth):
        feats.append({"type": "Feature", "id": k,
                      "properties": {"type": t.type, "length_m": round(t.length_m, 3),
                                     "width_m": round(t.width_m, 3), "angle": round(t.angle, 3),
                                     "hidden": t.hidden, "train": t.train},
                      "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in t.ring()]]}})

    def wkt_poly(pts):
        m = [scene.to_map(x, y) for x, y in pts] + [scene.to_map(*pts[0])]
        return "POLYGON((%s))" % ", ".join("%.12g %.12g" % p for p in m)

    look = []
    for o in L.objs:
        if o.kind in ("truck", "container", "shed", "platform"):
            look.append({"type": o.kind, "wkt": wkt_poly(_rect(o.cx, o.cy, o.az, o.length + 2, o.width + 2))})
    for m in L.masts:
        fr = L.frame
        if m["gantry"]:
            a = fr.xy(m["s"], m["t0"])
            b = fr.xy(m["s"], m["t1"])
        else:
            a = b = fr.xy(m["s"], m["t"])
        d = 9.0 / scene.sun.tan
        ox, oy = scene.sun.dir[0] * d, scene.sun.dir[1] * d
        pts = _hull([(float(a[0]), float(a[1])), (float(b[0]), float(b[1])),
                     (float(a[0]) + ox, float(a[1]) + oy), (float(b[0]) + ox, float(b[1]) + oy)])
        if len(pts) >= 3:
            look.append({"type": "catenary", "wkt": wkt_poly(pts)})
    tracks, corr = [], []
    fr = L.frame
    for i, t in enumerate(L.t_tracks):
        lo, hi = L.s_range[i]
        lo, hi = max(lo, L.s_lo), min(hi, L.s_hi)
        n = max(2, int((hi - lo) / 10) + 1)
        ss = np.linspace(lo, hi, n)
        pts = [tuple(float(v) for v in fr.xy(s_, t)) for s_ in ss]
        tracks.append(pts)
    tracks += L.extra_tracks
    for pts in tracks:
        m = [scene.to_map(x, y) for x, y in pts]
        corr_pts = []
        # corridor polygon: offset both sides by 2.5 m
        left, right = [], []
        for j in range(len(pts)):
            a = pts[max(j - 1, 0)]
            b = pts[min(j + 1, len(pts) - 1)]
            dx, dy = b[0] - a[0], b[1] - a[1]
            ln = math.hypot(dx, dy) or 1.0
            nx, ny = -dy / ln * 2.5, dx / ln * 2.5
            left.append((pts[j][0] + nx, pts[j][1] + ny))
            right.append((pts[j][0] - nx, pts[j][1] - ny))
        corr_pts = left + right[::-1]
        corr.append(wkt_poly(corr_pts))
    track_wkt = ["LINESTRING(%s)" % ", ".join("%.12g %.12g" % p for p in
                                              [scene.to_map(x, y) for x, y in pts]) for pts in tracks]
    code = scene.srs.GetAuthorityCode(None)
    auth = scene.srs.GetAuthorityName(None)
    fc = {"type": "FeatureCollection", "name": spec.name, "features": feats,
          "scene": {"name": spec.name, "gsd_m": spec.gsd_m, "crs": spec.crs, "date": spec.date,
                    "spec": dataclasses.asdict(spec), "freight": sum(1 for t in truth if t.is_freight()
                                                                     and not t.hidden),
                    "locomotives": sum(1 for t in truth if not t.is_freight() and not t.hidden)},
          "lookalikes": look, "tracks": track_wkt, "track_corridors": corr}
    if code and auth:
        fc["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:%s::%s" % (auth, code)}}
        if scene.srs.IsGeographic() and code == "4326":
            fc["crs"]["properties"]["name"] = "urn:ogc:def:crs:OGC:1.3:CRS84"
    with open(path, "w") as fh:
        json.dump(fc, fh, default=_json_default)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def truth_path(raster_path):
    return raster_path + TRUTH_SUFFIX


def generate_scene(spec, path, progress=None, workers=1):
    """Write the GeoTIFF at ``path`` and its truth next to it; return the
    list of :class:`TruthCar` (hidden cars included, flagged).
    ``workers`` > 1 renders tiles in forked processes (scripts only: never
    fork a QGIS process)."""
    scene = _Scene(spec)
    L = scene.L
    w, h = L.w_px, L.h_px
    nb = {"pan": 1, "bgrn": 4, "rgbn": 4}.get(spec.bands, 3)
    gtype = {"uint8": gdal.GDT_Byte, "uint16": gdal.GDT_UInt16, "float32": gdal.GDT_Float32}[spec.dtype]
    use_alpha = spec.alpha and spec.dtype == "uint8" and spec.nodata_edge > 0
    opts = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER"]
    if spec.compress:
        opts.append("COMPRESS=%s" % spec.compress)
    if spec.dtype == "uint8" and nb == 3 and not use_alpha:
        opts.append("PHOTOMETRIC=RGB")
    if use_alpha:
        opts += ["PHOTOMETRIC=RGB", "ALPHA=YES"]
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(path, w, h, nb + (1 if use_alpha else 0), gtype, opts)
    ds.SetGeoTransform(scene.geotransform())
    ds.SetProjection(scene.srs.ExportToWkt())
    if spec.date:
        ds.SetMetadataItem("TIFFTAG_DATETIME", spec.date.replace("-", ":") + " 02:30:00")
    interp = {"rgb": [gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand],
              "bgrn": [gdal.GCI_BlueBand, gdal.GCI_GreenBand, gdal.GCI_RedBand, gdal.GCI_Undefined],
              "rgbn": [gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand, gdal.GCI_Undefined],
              "pan": [gdal.GCI_GrayIndex]}[spec.bands if spec.bands in ("bgrn", "rgbn", "pan") else "rgb"]
    names = {"rgb": ["Red", "Green", "Blue"], "bgrn": ["Blue", "Green", "Red", "NIR"],
             "rgbn": ["Red", "Green", "Blue", "NIR"], "pan": ["Pan"]}[spec.bands if spec.bands in
                                                                  ("bgrn", "rgbn", "pan") else "rgb"]
    nodata = None
    if spec.dtype in ("uint16",) or (spec.dtype == "uint8" and not use_alpha):
        nodata = 0
    elif spec.dtype == "float32":
        nodata = -9999.0
    for b in range(nb):
        band = ds.GetRasterBand(b + 1)
        band.SetColorInterpretation(interp[b])
        band.SetDescription(names[b])
        if nodata is not None and (spec.nodata_edge > 0 or spec.dtype != "uint8"):
            band.SetNoDataValue(nodata)
    if use_alpha:
        ds.GetRasterBand(nb + 1).SetColorInterpretation(gdal.GCI_AlphaBand)
    tp = spec.tile_px or max(256, (1024 // scene.s) // 256 * 256)
    tiles = [(c0, r0, min(tp, w - c0), min(tp, h - r0)) for r0 in range(0, h, tp)
             for c0 in range(0, w, tp)]
    global _WORKER_SCENE
    old_cache = gdal.GetCacheMax()
    gdal.SetCacheMax(64 * 1024 * 1024)     # written blocks need not stay in memory
    pool = None
    try:
        if workers > 1 and len(tiles) > 1 and "fork" in mp.get_all_start_methods():
            _WORKER_SCENE = scene
            pool = mp.get_context("fork").Pool(workers)
            results = pool.imap(_tile_job, tiles)
        else:
            results = (_render_product(scene, *t) for t in tiles)
        for k, (c0, r0, x, valid) in enumerate(results):
            th, tw = x.shape[1:]
            if valid is not None and not use_alpha:
                x[:, ~valid] = nodata
            for b in range(nb):
                ds.GetRasterBand(b + 1).WriteArray(x[b], c0, r0)
            if use_alpha:
                a = np.full((th, tw), 255, np.uint8) if valid is None else (valid * 255).astype(np.uint8)
                ds.GetRasterBand(nb + 1).WriteArray(a, c0, r0)
            if progress:
                progress((k + 1) / len(tiles))
        ds.FlushCache()
        ds = None
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _WORKER_SCENE = None
        gdal.SetCacheMax(old_cache)
    truth = []
    for c in scene.cars:
        pts = _rect(c.cx, c.cy, c.az, c.length, c.width)
        mx, my = scene.to_map(c.cx, c.cy)
        truth.append(TruthCar(cx=mx, cy=my, length_m=c.length, width_m=c.width, angle=c.az % 180.0,
                              type=c.ctype, corners=[scene.to_map(x, y) for x, y in pts],
                              hidden=c.hidden, train=c.train))
    _write_truth(scene, truth_path(path), truth)
    return truth


_WORKER_SCENE = None


def _tile_job(t):
    return _render_product(_WORKER_SCENE, *t)


def _render_product(scene, c0, r0, tw, th):
    """One output tile as product DN (bands, th, tw) and its valid mask."""
    spec, L = scene.spec, scene.L
    npdt = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}[spec.dtype]
    refl = scene.render_tile(c0, r0, tw, th)
    rng = np.random.default_rng([int(spec.seed), 41, c0, r0])
    x, lo, hi = _product(spec, refl, rng)
    if lo is not None:
        x = np.clip(np.rint(x), lo, hi).astype(npdt)
    else:
        x = x.astype(np.float32)
    if spec.jpeg_quality and spec.dtype == "uint8" and x.shape[0] in (1, 3):
        x = np.maximum(_jpeg_roundtrip(x, spec.jpeg_quality), 1)
    valid = None
    if L.nodata:
        xs = (np.arange(c0, c0 + tw) + 0.5) * spec.gsd_m
        ys = (np.arange(r0, r0 + th) + 0.5) * spec.gsd_m
        valid = np.ones((th, tw), bool)
        for (ax_, ay_), (bx_, by_) in L.nodata:
            valid &= ((bx_ - ax_) * (ys[:, None] - ay_) - (by_ - ay_) * (xs[None, :] - ax_)) < 0
    return c0, r0, x, valid


def _jpeg_roundtrip(x, quality):
    """Encode through GDAL's JPEG driver in memory and decode: real 8x8 DCT
    blocks and chroma subsampling."""
    nb, h, w = x.shape
    mem = gdal.GetDriverByName("MEM").Create("", w, h, nb, gdal.GDT_Byte)
    for b in range(nb):
        mem.GetRasterBand(b + 1).WriteArray(x[b])
    name = "/vsimem/railcar_synth_%d.jpg" % id(x)
    gdal.GetDriverByName("JPEG").CreateCopy(name, mem, 0, ["QUALITY=%d" % int(quality)]).FlushCache()
    back = gdal.Open(name)
    out = back.ReadAsArray()
    back = None
    gdal.Unlink(name)
    return out.reshape(nb, h, w).astype(np.uint8)


# --------------------------------------------------------------------------- reading truth
def _truth_file(path):
    if path.endswith(".geojson") or path.endswith(".json"):
        return path
    return truth_path(path)


def load_truth(path, include_hidden=True):
    """TruthCars of a scene (``path``: the raster or its truth file)."""
    with open(_truth_file(path)) as fh:
        fc = json.load(fh)
    out = []
    for f in fc["features"]:
        p = f["properties"]
        ring = [tuple(c) for c in f["geometry"]["coordinates"][0][:-1]]
        cx = sum(c[0] for c in ring) / len(ring)
        cy = sum(c[1] for c in ring) / len(ring)
        t = TruthCar(cx=cx, cy=cy, length_m=p["length_m"], width_m=p["width_m"], angle=p["angle"],
                     type=p["type"], corners=ring, hidden=bool(p.get("hidden", False)),
                     train=int(p.get("train", -1)))
        if include_hidden or not t.hidden:
            out.append(t)
    return out


def load_scene_info(path):
    """Extras of a scene: dict with lookalikes [(type, wkt)], tracks [wkt],
    track_corridors [wkt] and scene (name, gsd_m, crs, date, spec...)."""
    with open(_truth_file(path)) as fh:
        fc = json.load(fh)
    return {"lookalikes": [(d["type"], d["wkt"]) for d in fc.get("lookalikes", [])],
            "tracks": list(fc.get("tracks", [])),
            "track_corridors": list(fc.get("track_corridors", [])),
            "scene": fc.get("scene", {})}


def cached_scene(spec, out_dir, workers=1):
    """Generate ``spec`` into ``out_dir`` unless a file made from the same
    spec (and generator version) is already there. Returns (path, truth)."""
    path = os.path.join(out_dir, "%s_%s.tif" % (spec.name, spec.key()))
    if os.path.exists(path) and os.path.exists(truth_path(path)):
        return path, load_truth(path)
    tmp = path + ".part.tif"
    truth = generate_scene(spec, tmp, workers=workers)
    os.replace(tmp, path)
    os.replace(truth_path(tmp), truth_path(path))
    return path, truth


# --------------------------------------------------------------------------- sites and suites
def _sun_for_date(iso, lat=42.42):
    """Sun at a ~10:30 local overpass on that date (approximate)."""
    y, m, d = (int(v) for v in iso.split("-"))
    doy = (m - 1) * 30.5 + d
    decl = 23.44 * math.sin(2 * math.pi * (doy - 81) / 365.0)
    noon = 90 - lat + decl
    el = max(12.0, noon - 10.0)
    az = 150.0 + 10 * math.cos(2 * math.pi * (doy - 172) / 365.0)
    season = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
              6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}[m]
    return az, el, season


def site_spec(date, n_cars, seed=7, gsd_m=0.5, crs="EPSG:32652", name="tumangang", size_m=(600.0, 600.0)):
    """Spec of one date of a site: fixed layout, cars/sun/season per date."""
    az, el, season = _sun_for_date(date)
    dseed = int(date.replace("-", ""))
    r = np.random.default_rng([seed, dseed])
    return SceneSpec(
        name="site_" + name, seed=seed, cars_seed=dseed, gsd_m=gsd_m, crs=crs, size_m=tuple(size_m),
        n_tracks=12, track_angle_deg=38.0, curve_radius_m=-2500.0, ladder=True, turnouts=2,
        gauge_m=0, n_cars=int(n_cars), car_mix={"open": 0.45, "box": 0.15, "tank": 0.2, "covered": 0.15,
                                              "flat": 0.05},
        locomotive_rate=0.35, sun_azimuth=az, sun_elevation=el, season=season,
        snow=0.5 if season == "winter" and r.random() < 0.5 else 0.0,
        containers=20, sheds=2, trucks=5, buildings=10, platforms=1, roads=2,
        haze=float(r.uniform(0.0, 0.15)), noise=0.008, blur=0.55, date=date)


def generate_site(out_dir, dates_counts, seed=7, gsd_m=0.5, crs="EPSG:32652", name="tumangang",
                  size_m=(600.0, 600.0), workers=1):
    """The same yard imaged on several dates. ``dates_counts``: dict or list
    of (ISO date, number of freight cars). Files ``<name>_<date>.tif``.
    Returns [(path, date, truth)] in date order. ``workers`` as in
    :func:`generate_scene` (never > 1 inside QGIS)."""
    items = sorted(dict(dates_counts).items())
    out = []
    os.makedirs(out_dir, exist_ok=True)
    for date, n in items:
        spec = site_spec(date, n, seed=seed, gsd_m=gsd_m, crs=crs, name=name, size_m=size_m)
        path = os.path.join(out_dir, "%s_%s.tif" % (name, date))
        truth = generate_scene(spec, path, workers=workers)
        out.append((path, date, truth))
    return out


def tuning_suite():
    """Scenes the detector may be tuned on."""
    S = SceneSpec
    return [
        S(name="t01_rgb05_straight", seed=101, gsd_m=0.5, size_m=(600, 600), n_tracks=12,
          track_angle_deg=0.0, occupancy=0.55),
        S(name="t02_rgb03_rotated", seed=102, gsd_m=0.3, size_m=(450, 450), n_tracks=10,
          track_angle_deg=57.0, occupancy=0.5, sun_azimuth=120, sun_elevation=55),
        S(name="t03_rgb05_curve_turnouts", seed=103, gsd_m=0.5, size_m=(650, 650), n_tracks=10,
          track_angle_deg=110.0, curve_radius_m=600.0, turnouts=3, ladder=True, occupancy=0.5),
        S(name="t04_rgb05_winter_low_sun", seed=104, gsd_m=0.5, size_m=(600, 600), n_tracks=12,
          track_angle_deg=75.0, sun_azimuth=160, sun_elevation=20, season="winter", snow=0.4,
          catenary=True, occupancy=0.6),
        S(name="t05_rgb07_4326", seed=105, gsd_m=0.7, crs="EPSG:4326", size_m=(900, 900), n_tracks=12,
          track_angle_deg=140.0, occupancy=0.5, blur=0.7),
        S(name="t06_rgb10_blur_noise", seed=106, gsd_m=1.0, size_m=(1200, 1200), n_tracks=14,
          track_angle_deg=20.0, occupancy=0.5, blur=0.8, noise=0.015),
        S(name="t07_bgrn05_uint16", seed=107, gsd_m=0.5, dtype="uint16", bit_depth=11, bands="bgrn",
          size_m=(600, 600), n_tracks=10, track_angle_deg=95.0, nodata_edge=0.12),
        S(name="t08_pan05_feet", seed=108, gsd_m=0.5, bands="pan", crs="EPSG:2263", size_m=(600, 600),
          n_tracks=10, track_angle_deg=33.0, car_mix={"covered": 0.5, "open": 0.5}),
        S(name="t09_rgb05_jpeg_haze", seed=109, gsd_m=0.5, size_m=(600, 600), n_tracks=10,
          track_angle_deg=170.0, jpeg_quality=55, haze=0.3, catenary=True, off_nadir_deg=18.0,
          view_azimuth=250.0),
        S(name="t10_rgb05_clouds", seed=110, gsd_m=0.5, size_m=(600, 600), n_tracks=10,
          track_angle_deg=45.0, clouds=0.2, sun_azimuth=210),
        S(name="t11_rgb05_lookalikes", seed=111, gsd_m=0.5, size_m=(600, 600), n_tracks=8,
          track_angle_deg=15.0, n_cars=0, locomotive_rate=0, trucks=14, truck_parking=14,
          containers=60, sheds=3, platforms=2, buildings=12, roads=2),
        S(name="t12_rgb10_4326_lookalikes", seed=112, gsd_m=1.0, crs="EPSG:4326", size_m=(1000, 1000),
          n_tracks=0, trucks=20, truck_parking=20, containers=80, sheds=4, buildings=20, roads=2),
        # quiet yards: a dozen cars, most alone on their track, and none at all
        S(name="t13_rgb10_sparse", seed=113, gsd_m=1.0, size_m=(600, 600), n_tracks=10,
          track_angle_deg=60.0, n_cars=12, single_car_rate=1.0, locomotive_rate=0.0, blur=0.6,
          catenary=True),
        S(name="t14_rgb05_sparse", seed=114, gsd_m=0.5, size_m=(500, 500), n_tracks=8,
          track_angle_deg=125.0, n_cars=10, single_car_rate=0.8, sun_azimuth=200, sun_elevation=25),
        S(name="t15_rgb07_empty", seed=115, gsd_m=0.7, size_m=(600, 600), n_tracks=12,
          track_angle_deg=170.0, n_cars=0, locomotive_rate=0.0, catenary=True, trucks=8),
    ]


def holdout_suite():
    """Held out: different seeds, parameters and layouts. Report on these."""
    S = SceneSpec
    return [
        S(name="h01_rgb05_dense", seed=9001, gsd_m=0.5, size_m=(700, 700), n_tracks=16,
          track_angle_deg=63.0, occupancy=0.7, sun_azimuth=135, sun_elevation=35, catenary=True,
          sharpen=0.6),
        S(name="h02_rgb03_curve", seed=9002, gsd_m=0.3, size_m=(500, 500), n_tracks=8,
          track_angle_deg=12.0, curve_radius_m=-450.0, turnouts=2, occupancy=0.5,
          sun_azimuth=230, sun_elevation=48),
        S(name="h03_rgb05_3857_ladder", seed=9003, gsd_m=0.5, crs="EPSG:3857", size_m=(650, 650),
          n_tracks=11, track_angle_deg=152.0, ladder=True, turnouts=2, occupancy=0.5),
        S(name="h04_rgb05_winter", seed=9004, gsd_m=0.5, size_m=(600, 600), n_tracks=12,
          track_angle_deg=88.0, sun_azimuth=165, sun_elevation=18, season="winter", snow=0.6,
          occupancy=0.55, car_mix={"open": 0.4, "covered": 0.3, "tank": 0.3}),
        S(name="h05_rgb07_utm", seed=9005, gsd_m=0.7, size_m=(900, 900), n_tracks=14,
          track_angle_deg=28.0, curve_radius_m=1200.0, occupancy=0.5, blur=0.7, haze=0.1,
          off_nadir_deg=22.0, view_azimuth=110.0),
        S(name="h06_rgb10_4326", seed=9006, gsd_m=1.0, crs="EPSG:4326", size_m=(1300, 1300),
          n_tracks=16, track_angle_deg=117.0, occupancy=0.55, blur=0.8, noise=0.012),
        S(name="h07_bgrn05_uint16_12bit", seed=9007, gsd_m=0.5, dtype="uint16", bit_depth=12,
          bands="bgrn", size_m=(600, 600), n_tracks=10, track_angle_deg=5.0, nodata_edge=0.15,
          sun_azimuth=100, sun_elevation=30),
        S(name="h08_pan03_feet", seed=9008, gsd_m=0.3, bands="pan", crs="EPSG:2263", size_m=(450, 450),
          n_tracks=9, track_angle_deg=72.0, occupancy=0.6, car_mix={"covered": 0.4, "box": 0.3, "flat": 0.3},
          sharpen=0.8),
        S(name="h09_rgb05_jpeg_noise", seed=9009, gsd_m=0.5, size_m=(600, 600), n_tracks=10,
          track_angle_deg=128.0, jpeg_quality=45, noise=0.015, blur=0.8, haze=0.2, off_nadir_deg=15.0,
          view_azimuth=300.0),
        S(name="h10_rgb07_clouds_alpha", seed=9010, gsd_m=0.7, size_m=(800, 800), n_tracks=12,
          track_angle_deg=41.0, clouds=0.25, nodata_edge=0.1, alpha=True),
        S(name="h11_f32_05", seed=9011, gsd_m=0.5, dtype="float32", size_m=(550, 550), n_tracks=10,
          track_angle_deg=160.0, occupancy=0.5, sun_azimuth=200, sun_elevation=60, catenary=True),
        S(name="h12_rgb05_lookalikes", seed=9012, gsd_m=0.5, size_m=(650, 650), n_tracks=10,
          track_angle_deg=100.0, n_cars=0, locomotive_rate=0, trucks=16, truck_parking=18,
          containers=70, sheds=4, platforms=2, buildings=14, roads=2, catenary=True),
        S(name="h13_rgb07_lookalikes_notracks", seed=9013, gsd_m=0.7, size_m=(800, 800), n_tracks=0,
          trucks=18, truck_parking=16, containers=60, sheds=3, buildings=18, roads=2),
        S(name="h14_rgb10_4326_sparse", seed=9014, gsd_m=1.0, crs="EPSG:4326", size_m=(700, 700),
          n_tracks=12, track_angle_deg=35.0, n_cars=15, single_car_rate=0.9, blur=0.7,
          sun_azimuth=120, sun_elevation=30),
        S(name="h15_bgrn05_uint16_sparse", seed=9015, gsd_m=0.5, dtype="uint16", bands="bgrn",
          size_m=(500, 500), n_tracks=9, track_angle_deg=95.0, n_cars=8, single_car_rate=1.0,
          catenary=True),
        S(name="h16_rgb10_empty", seed=9016, gsd_m=1.0, size_m=(700, 700), n_tracks=14,
          track_angle_deg=148.0, n_cars=0, locomotive_rate=0.0, noise=0.012),
    ]


def speed_spec(size_px=8000, seed=4242, compress=None):
    """A large 3-band uint8 0.5 m scene for the speed benchmark: one long
    yard across the image, roads, buildings and look-alikes elsewhere."""
    return SceneSpec(name="speed_%d" % size_px, seed=seed, gsd_m=0.5, size_px=(size_px, size_px),
                     n_tracks=24, track_angle_deg=35.0, turnouts=4, occupancy=0.5,
                     containers=max(20, size_px // 40), trucks=max(4, size_px // 250),
                     truck_parking=12, sheds=3, platforms=1, roads=2,
                     buildings=max(6, (size_px // 500) ** 2 // 2), catenary=True, compress=compress)
