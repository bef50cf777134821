"""Count railcars on one raster: the entry point shared by the dock,
Processing and the command line. Pure numpy/GDAL/shapely, no Qt.

The raster is read window by window (never whole), resampled to the
network's 0.5 m pixels (area average from finer imagery, bilinear from
coarser), so memory stays bounded and one setting works from 0.1 m aerial
photos to 1 m satellite products. Each window carries a margin wider
than the longest car; a car belongs to the window whose core holds its
centre, and a last pass removes the few found twice near a seam. Imagery
softer than its pixel size is sharpened first (sharpness.py).
"""
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import math
import os
import threading

import numpy as np
from osgeo import gdal, ogr
from shapely import wkt as shapely_wkt
from shapely.geometry import Point, Polygon, box
from shapely.ops import unary_union
from shapely.prepared import prep

from .blas import single_threaded_blas
from .cars import detect_in_tile, floor_threshold, models_for, scene_threshold, settle, shadow_side
from .dates import raster_date
from .detections import Detection
from .errors import Canceled, InputError
from .imaging import box_along_x, box_along_y
from .network import INPUT_GSD, grid_step, reach_m
from .raster import RasterSource, _metres_per_degree
from . import shadows, sharpness, track_alignment

TILE_M = 260.0            # core of a window, metres (memory per worker ~ its square)
MARGIN_M = reach_m() + 4.0  # the network sees this far: cores do not depend on seams
MAX_GSD_M = 1.5           # coarser pixels cannot show a 3 m wide car
COARSE_GSD_M = 1.05       # coarser than this, counts come out low (coarse_note)
FULL_COVERAGE = 0.95      # less of the area of interest with image data: coverage_note
TRACK_NOTE_M = 1.5        # a tracks layer moved this far or farther: track_note
WORKERS = 2               # the machines analysts use have at least two cores
# Windows look for cars this close to known tracks: as far as the tracks
# layer may be off the image and still be lined up with it
# (track_alignment), plus the distance at which a car counts on a line.
TRACK_REACH_M = track_alignment.MAX_SHIFT_M + track_alignment.TOLERANCE_M


@dataclass
class CountOptions:
    """What the analyst chose. Geometries are WKT in the raster's CRS."""
    sensitivity: float = 0.5          # 0 (strict) .. 1 (finds more, risks more)
    aoi_wkt: list = field(default_factory=list)      # polygons; empty = whole raster
    tracks_wkt: list = field(default_factory=list)   # lines; empty = find tracks
    date: str = ""                    # ISO date; empty = read from name/metadata
    source: str = ""                  # name shown in the 'source' field
    crs_wkt: str = ""                 # the raster's CRS if not the file's (the layer's)
    pixel_size_m: float = 0.0         # > 0: the analyst's pixel size, over the georeferencing's


@dataclass
class CountResult:
    detections: list          # [Detection], all types, centres inside the AOI
    gsd_m: float              # pixel size of the raster in metres
    crs_wkt: str
    date: str
    source: str
    blur_px: float = None     # spread of the image's edges, native pixels (None: not measured)
    sharpened: float = 0.0    # unsharp amount applied before counting (0: none)
    track_shift_m: float = 0.0  # how far the tracks layer was moved onto the cars (0: not)
    track_shift_to: str = ""    # which way ("north-east" ...)
    coverage: float = None    # share of the area of interest with image data (None: no AOI)
    score_threshold: float = None  # score the cars reached (cars.scene_threshold)
    shadow_side: object = None  # shadows.ShadowSide the cars told (None: not asked)

    @property
    def count(self):
        """Freight cars: locomotives are reported apart."""
        return sum(1 for d in self.detections if d.is_freight())

    @property
    def locomotives(self):
        return sum(1 for d in self.detections if not d.is_freight())

    @property
    def sharpening_note(self):
        """One line for the log when the image was sharpened, else ''."""
        if not self.sharpened:
            return ""
        return ("The image is softer than its pixel size (edges spread over %.2f px): it was "
                "sharpened before counting (amount %.2f)." % (self.blur_px, self.sharpened))

    @property
    def shadow_note(self):
        """One line for the log on whether the cars told which side their
        shadows fall on (imagery the shadow-side verifier reads), else ''."""
        side = self.shadow_side
        if side is None:
            return ""
        if side.sun_azimuth is not None:
            return ("The image's metadata puts the sun at azimuth %.0f degrees: each car was "
                    "checked knowing the side its shadow falls on." % side.sun_azimuth)
        if side.by_date:
            return ("The cars do not agree on the side their shadows fall on (%d voted, "
                    "agreement %.2f), but the image's date and latitude tell where they fall "
                    "(within %.0f degrees by day): cars whose side that leaves in no doubt "
                    "were checked knowing it." % (side.votes, side.agreement, side.spread_deg))
        if side.direction is not None:
            return ("The cars agree on the side their shadows fall on (%d voted, agreement "
                    "%.2f): each car was checked knowing it." % (side.votes, side.agreement))
        return ("The cars do not agree on the side their shadows fall on (%d voted, agreement "
                "%.2f): cars were checked without it." % (side.votes, side.agreement))

    @property
    def track_note(self):
        """One line for the log when the tracks layer was off the image by
        TRACK_NOTE_M or more, else '' (off-nadir roofs lean 1-2 m off their
        tracks: smaller shifts are the image's, not the layer's)."""
        if self.track_shift_m < TRACK_NOTE_M:
            return ""
        return ("The rail tracks layer lies about %.1f m off this image: the cars stand %.1f m "
                "%s of its lines. The lines were moved onto the cars before keeping the cars "
                "on them." % (self.track_shift_m, self.track_shift_m, self.track_shift_to))

    @property
    def coarse_note(self):
        """A warning for pixels coarser than 1 m, else ''. Measured on tuning
        scenes made coarser: 1.2 m pixels counted 5 % fewer cars than at
        1 m, 1.45 m 10 % fewer (coupled cars merge)."""
        if not self.gsd_m or self.gsd_m <= COARSE_GSD_M:
            return ""
        return ("Pixels of %.2f m are coarser than 1 m: coupled cars merge, and counts "
                "come out about 5-10 %% low." % self.gsd_m)

    @property
    def coverage_note(self):
        """A warning when the image covers only part of the area of
        interest (a strip's edge, masked clouds), else ''."""
        if self.coverage is None or self.coverage >= FULL_COVERAGE:
            return ""
        return ("Only %d %% of the area of interest has image data (the rest lies outside "
                "the image or is no data): the count covers that part only."
                % int(100 * self.coverage))

    @property
    def warnings(self):
        """What the analyst should know about this count: tracks moved,
        pixels coarser than the counter is made for, part of the area of
        interest without image."""
        return [n for n in (self.track_note, self.coarse_note, self.coverage_note) if n]

    @property
    def notes(self):
        """How the image was counted, when not as it came: the sharpening
        note and the warnings, in one text."""
        return " ".join(([self.sharpening_note] if self.sharpening_note else [])
                        + self.warnings)


def _load_geometries(wkts, kind):
    geoms = []
    for text in wkts or []:
        try:
            g = shapely_wkt.loads(text)
        except Exception:   # shapely raises several types across versions
            raise InputError("The %s holds a geometry that cannot be read. Check the "
                             "layer (Vector > Geometry Tools > Check Validity)." % kind) from None
        if not g.is_empty:
            geoms.append(g)
    return geoms


class _Window:
    """One read window: native pixel offsets, size, and its buffer size."""

    def __init__(self, src, cx0, cy0, cx1, cy1, mx, my, work):
        self.core = (cx0, cy0, cx1, cy1)
        # start on the network's grid (counted from the raster's corner)
        qx = grid_step() * work / src.gsd_x_m
        qy = grid_step() * work / src.gsd_y_m
        self.xoff = max(0, int(round(math.floor((cx0 - mx) / qx) * qx)))
        self.yoff = max(0, int(round(math.floor((cy0 - my) / qy) * qy)))
        self.xsize = min(src.width, cx1 + mx) - self.xoff
        self.ysize = min(src.height, cy1 + my) - self.yoff
        self.buf_w = max(8, int(round(self.xsize * src.gsd_x_m / work)))
        self.buf_h = max(8, int(round(self.ysize * src.gsd_y_m / work)))
        self.sx = self.xsize / self.buf_w      # native pixels per buffer pixel
        self.sy = self.ysize / self.buf_h

    def to_native(self, x, y):
        """Buffer pixel centre coordinates -> native pixel-edge coordinates."""
        return self.xoff + (x + 0.5) * self.sx, self.yoff + (y + 0.5) * self.sy


def _even_steps(start, stop, most):
    """Split [start, stop) into equal parts of at most ``most`` pixels (no
    thin last window that would cost a full margin for a sliver of core)."""
    parts = max(1, -(-(stop - start) // most))
    size = -(-(stop - start) // parts)
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def _windows(src, work, bounds=None):
    tile_x = max(64, int(TILE_M / src.gsd_x_m))
    tile_y = max(64, int(TILE_M / src.gsd_y_m))
    mx = int(math.ceil(MARGIN_M / src.gsd_x_m))
    my = int(math.ceil(MARGIN_M / src.gsd_y_m))
    c0, r0, c1, r1 = bounds or (0, 0, src.width, src.height)
    for cy0, cy1 in _even_steps(r0, r1, tile_y):
        for cx0, cx1 in _even_steps(c0, c1, tile_x):
            yield _Window(src, cx0, cy0, cx1, cy1, mx, my, work)


def _aoi_pixel_bounds(src, aoi):
    minx, miny, maxx, maxy = aoi.bounds
    cols, rows = [], []
    for x, y in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy)):
        c, r = src.map_to_pixel(x, y)
        cols.append(c)
        rows.append(r)
    c0 = max(0, int(math.floor(min(cols))))
    r0 = max(0, int(math.floor(min(rows))))
    c1 = min(src.width, int(math.ceil(max(cols))))
    r1 = min(src.height, int(math.ceil(max(rows))))
    if c1 <= c0 or r1 <= r0:
        raise InputError("The area of interest does not overlap the raster. Check that "
                         "it covers the imaged site.")
    return c0, r0, c1, r1


def _near_raster(src, geoms, bounds, margin_m):
    """``geoms`` cut to the part of the raster that is counted (``bounds``,
    pixels) grown by ``margin_m``: a railway layer or a boundary of a whole
    country would otherwise be rasterised in full for every window."""
    c0, r0, c1, r1 = bounds or (0, 0, src.width, src.height)
    mx, my = margin_m / src.gsd_x_m + 2, margin_m / src.gsd_y_m + 2
    corners = [src.pixel_to_map(c, r) for c in (c0 - mx, c1 + mx) for r in (r0 - my, r1 + my)]
    xs, ys = zip(*corners)
    area = box(min(xs), min(ys), max(xs), max(ys))
    cut = [g.intersection(area) if not area.contains(g) else g for g in geoms
           if g.intersects(area)]
    return [g for g in cut if not g.is_empty]


def _window_box(src, win):
    pts = [src.pixel_to_map(c, r) for c in (win.xoff, win.xoff + win.xsize)
           for r in (win.yoff, win.yoff + win.ysize)]
    xs, ys = zip(*pts)
    return box(min(xs), min(ys), max(xs), max(ys))


def _burn(src, win, layer, all_touched=False):
    """``layer`` (OGR) burnt into the window's working grid: 1 on it, 0 off."""
    drv = gdal.GetDriverByName("MEM")
    ds = drv.Create("", win.buf_w, win.buf_h, 1, gdal.GDT_Byte)
    g = src.gt
    ds.SetGeoTransform((g[0] + win.xoff * g[1] + win.yoff * g[2], g[1] * win.sx, g[2] * win.sy,
                        g[3] + win.xoff * g[4] + win.yoff * g[5], g[4] * win.sx, g[5] * win.sy))
    ds.SetProjection(src.crs_wkt)
    gdal.RasterizeLayer(ds, [1], layer, burn_values=[1],
                        options=["ALL_TOUCHED=TRUE"] if all_touched else [])
    return ds.GetRasterBand(1).ReadAsArray()


def _track_mask(src, win, tracks_ogr, work):
    """Known tracks burnt into the window's working grid, widened by
    TRACK_REACH_M: where cars are looked for (which of them are on the
    tracks is decided once the tracks are lined up with the image)."""
    m = _burn(src, win, tracks_ogr, all_touched=True).astype(np.float32)
    n = max(1, int(round(2 * TRACK_REACH_M / work))) | 1
    return box_along_y(box_along_x(m, n), n) > 0.01


def _ogr_layer(src, geoms):
    """An in-memory OGR layer of shapely geometries, for rasterising."""
    drv = ogr.GetDriverByName("Memory")
    ds = drv.CreateDataSource("geoms")
    lyr = ds.CreateLayer("geoms", src.srs.Clone() if src.crs_wkt else None, ogr.wkbUnknown)
    for g in geoms:
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(g.wkt))
        lyr.CreateFeature(f)
    return ds, lyr


def _core_mask(win):
    """The buffer pixels whose centres lie in the window's core (cores tile
    the raster: each pixel belongs to one)."""
    cx0, cy0, cx1, cy1 = win.core
    nx = win.xoff + (np.arange(win.buf_w) + 0.5) * win.sx
    ny = win.yoff + (np.arange(win.buf_h) + 0.5) * win.sy
    return ((ny >= cy0) & (ny < cy1))[:, None] & ((nx >= cx0) & (nx < cx1))[None, :]


class _Geo:
    """Turns pixel-frame cars into map geometry and metric attributes."""

    def __init__(self, src):
        self.src = src
        self.geographic = bool(src.srs.IsGeographic())
        if self.geographic:
            lat = src.pixel_to_map(src.width / 2, src.height / 2)[1]
            self.m_lat, self.m_lon = _metres_per_degree(lat)

    def compass(self, shift):
        """Where a shift in metres along columns and rows points on the
        ground: "north", "south-west" ..."""
        src = self.src
        c, r = src.width / 2.0, src.height / 2.0
        x0, y0 = src.pixel_to_map(c, r)
        x1, y1 = src.pixel_to_map(c + shift[0] / src.gsd_x_m, r + shift[1] / src.gsd_y_m)
        dx, dy = x1 - x0, y1 - y0
        if self.geographic:
            dx, dy = dx * self.m_lon, dy * self.m_lat
        names = ("north", "north-east", "east", "south-east", "south", "south-west", "west",
                 "north-west")
        return names[int(round(math.degrees(math.atan2(dx, dy)) / 45.0)) % 8]

    def detection(self, car, win, work):
        """A :class:`Detection` in map coordinates from a car in ``win``."""
        src = self.src
        ux, uy = math.cos(car.theta), math.sin(car.theta)
        vx, vy = -uy, ux
        hl, hw = car.length / 2.0, car.width / 2.0
        corners = []
        for a, b in ((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)):
            px, py = win.to_native(car.x + a * ux + b * vx, car.y + a * uy + b * vy)
            corners.append(src.pixel_to_map(px, py))
        cx, cy = src.pixel_to_map(*win.to_native(car.x, car.y))
        tip = src.pixel_to_map(*win.to_native(car.x + ux, car.y + uy))
        dx, dy = tip[0] - cx, tip[1] - cy
        if self.geographic:
            dx, dy = dx * self.m_lon, dy * self.m_lat
        azimuth = math.degrees(math.atan2(dx, dy)) % 180.0
        return Detection(cx=cx, cy=cy, length_m=round(car.length * work, 2),
                         width_m=round(car.width * work, 2), angle=round(azimuth, 2),
                         score=round(car.score, 3), type=car.type, corners=corners)


def _line_parts(geom):
    """The vertex sequences of a line geometry (multi-part and collections too)."""
    if hasattr(geom, "geoms"):
        return [part for g in geom.geoms for part in _line_parts(g)]
    return [list(geom.coords)] if geom.geom_type in ("LineString", "LinearRing") else []


def _keep_on_tracks(src, dets, tracks):
    """The detections on the known tracks, once the tracks are lined up with
    the image (track_alignment), and the shift applied, in metres along the
    raster's columns and rows (a local ground frame whatever the CRS)."""
    def to_metres(x, y):
        c, r = src.map_to_pixel(x, y)
        return c * src.gsd_x_m, r * src.gsd_y_m
    points = [to_metres(d.cx, d.cy) for d in dets]
    lines = [[to_metres(x, y) for x, y, *_ in part]
             for g in tracks for part in _line_parts(g)]
    shift = track_alignment.best_shift(points, [d.score for d in dets], lines)
    keep = track_alignment.near_lines(points, lines, shift)
    return [d for d, k in zip(dets, keep) if k], shift


def _deduplicate(dets, cell_size):
    """Drop detections that mostly overlap a better one (a car near a seam
    found by both windows). Detections are bucketed on a grid of
    ``cell_size`` map units (wider than a car) so only neighbours are
    compared."""
    dets = sorted(dets, key=lambda d: -d.score)
    polys = [Polygon(d.corners) for d in dets]
    kept = []
    grid = {}

    def clashes(p, key):
        for kx in (key[0] - 1, key[0], key[0] + 1):
            for ky in (key[1] - 1, key[1], key[1] + 1):
                for j in grid.get((kx, ky), ()):
                    q = polys[j]
                    if p.intersects(q) and p.intersection(q).area > 0.3 * min(p.area, q.area):
                        return True
        return False

    for i, d in enumerate(dets):
        key = (int(d.cx // cell_size), int(d.cy // cell_size))
        if not clashes(polys[i], key):
            kept.append(dets[i])
            grid.setdefault(key, []).append(i)
    return kept


def _shadows_told(src, date):
    """What the image says of its shadows beyond its cars: the side its
    metadata's sun azimuth gives (shadows.from_sun), else None; and where
    its date and latitude put shadows (shadows.daytime_shadows) as
    shadows.estimate takes it (the direction in the pixel frame and the
    spread in degrees), else None. (None, None) without a place on the earth."""
    frame = src.ground_frame()
    if frame is None:
        return None, None
    lat, east, north = frame

    def to_pixels(e, n):
        return e * east[0] + n * north[0], e * east[1] + n * north[1]
    azimuth = src.sun_azimuth()
    by_sun = (shadows.from_sun(azimuth, to_pixels(*shadows.ground_shadow(azimuth)))
              if azimuth is not None else None)
    told = shadows.daytime_shadows(lat, date) if date else None
    by_date = (to_pixels(*told[0]), told[1]) if told else None
    return by_sun, by_date


def count_railcars(path, options=None, progress=None, is_canceled=None):
    """Detect every railcar on the raster at ``path``.

    ``progress(fraction)`` is called with 0..1 from the calling thread;
    ``is_canceled()`` is polled (also from worker threads) between windows
    and between the network's layers, a fraction of a second apart, and the
    run raises :class:`errors.Canceled` when it says True.
    Raises :class:`errors.InputError` for input the detector cannot use.
    """
    options = options or CountOptions()
    if not 0.0 <= options.sensitivity <= 1.0:
        raise InputError("Sensitivity must be between 0 and 1 (0.5 is the default).")
    src = RasterSource(path, options.crs_wkt, options.pixel_size_m)
    work = INPUT_GSD
    if src.gsd_m > MAX_GSD_M:
        raise InputError("%s has %.1f m pixels: railcars (3 m wide) cannot be seen. Use "
                         "imagery of 1 m per pixel or finer." % (os.path.basename(path), src.gsd_m))
    aoi_geoms = _load_geometries(options.aoi_wkt, "area of interest")
    aoi = unary_union(aoi_geoms) if aoi_geoms else None
    bounds = _aoi_pixel_bounds(src, aoi) if aoi is not None else None
    aoi_test = prep(aoi) if aoi is not None else None
    aoi_near = _near_raster(src, aoi_geoms, bounds, 0.0) if aoi is not None else []
    given = _load_geometries(options.tracks_wkt, "tracks layer")
    tracks = _near_raster(src, given, bounds, TRACK_REACH_M)
    if given and not tracks:
        raise InputError("The rail tracks layer has no lines over %s%s. Choose the tracks of "
                         "this site, or leave the layer empty to find the tracks on the image."
                         % (os.path.basename(path), " and its area of interest" if aoi else ""))
    geo = _Geo(src)

    windows = [w for w in _windows(src, work, bounds)
               if aoi is None or aoi.intersects(_window_box(src, w))]
    tol = 4.0 / work                                   # pixels, for seam ownership
    local = threading.local()

    src.stretch()                                      # once, before the workers read
    blur_px = sharpness.edge_blur_px(
        [src.read(x, y, w, h, w, h)[0] for x, y, w, h in
         sharpness.patch_windows(bounds or (0, 0, src.width, src.height))])
    sigma, amount = sharpness.sharpening(blur_px, src.gsd_m, work)
    network, verifier, shadow_verifier = models_for(src.gsd_m)
    date = options.date or raster_date(path)
    by_sun, by_date = _shadows_told(src, date) if shadow_verifier is not None else (None, None)

    def run(win, side):
        # OGR layers are not shared between threads: one per worker
        if tracks and not hasattr(local, "tracks"):
            local.tracks = _ogr_layer(src, tracks)
        if aoi is not None and not hasattr(local, "aoi"):
            local.aoi = _ogr_layer(src, aoi_near)
        gray, valid = src.read(win.xoff, win.yoff, win.xsize, win.ysize, win.buf_w, win.buf_h)
        # image data in the area of interest, native pixels (see coverage)
        covered = 0.0
        if aoi is not None:
            inside = _core_mask(win) & (_burn(src, win, local.aoi[1]) > 0)
            covered = float((valid & inside).sum()) * win.sx * win.sy
        mask = _track_mask(src, win, local.tracks[1], work) if tracks else None
        if mask is not None and not mask.any():
            return win, [], covered
        gray = sharpness.unsharp(gray, sigma, amount)
        return win, detect_in_tile(gray, options.sensitivity, track_mask=mask, network=network,
                                   is_canceled=is_canceled, verifier=verifier,
                                   shadow_verifier=shadow_verifier, side=side), covered

    found = []     # (window, car): cars in their window's core
    # The image's cars tell which side shadows fall on (shadows.py). Once
    # the windows counted so far are sure of it, the next ones are read
    # with that side alone; results come back in the order the windows
    # were started, so which windows those are never depends on timing.
    side = by_sun             # the metadata's sun: every window reads with it
    voters = []
    done = 0
    covered = 0.0
    # Two workers (numpy and GDAL release the GIL); a bounded queue keeps
    # memory flat whatever the raster size.
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=WORKERS) as pool:
        pending = deque()
        todo = iter(windows)
        while True:
            while len(pending) < 2 * WORKERS:
                win = next(todo, None)
                if win is None:
                    break
                pending.append(pool.submit(run, win, side))
            if not pending:
                break
            win, cars, win_covered = pending.popleft().result()
            covered += win_covered
            if is_canceled is not None and is_canceled():
                for f in pending:
                    f.cancel()
                raise Canceled()
            cx0, cy0, cx1, cy1 = win.core
            mine = []
            for car in cars:
                nx, ny = win.to_native(car.x, car.y)
                if (cx0 - tol * win.sx <= nx < cx1 + tol * win.sx and
                        cy0 - tol * win.sy <= ny < cy1 + tol * win.sy):
                    mine.append(car)
            found.extend((win, car) for car in mine)
            new_voters = [car for car in mine if car.heat >= shadows.VOTE_HEAT]
            if shadow_verifier is not None and side is None and new_voters:
                voters.extend(new_voters)
                told = shadow_side(voters, by_date)
                side = told if told.sure else None
            done += 1
            if progress is not None:
                progress(done / len(windows))
    # each car takes the verifier's reading for the side its image told
    if shadow_verifier is not None and side is None:
        side = shadow_side(voters, by_date)
    kept = set(map(id, settle([car for _, car in found], side,
                              floor_threshold(options.sensitivity))))
    dets = [geo.detection(car, win, work) for win, car in found if id(car) in kept]
    if aoi_test is not None:
        dets = [d for d in dets if aoi_test.contains(Point(d.cx, d.cy))]
    units_per_m = math.hypot(src.gt[1], src.gt[4]) / src.gsd_x_m
    dets = _deduplicate(dets, 30.0 * units_per_m)
    shift = (0.0, 0.0)
    if tracks:
        dets, shift = _keep_on_tracks(src, dets, tracks)
    # the image's own threshold, from its cars (in the area, on the tracks)
    min_score = scene_threshold([d.score for d in dets], options.sensitivity)
    dets = [d for d in dets if d.score >= min_score]
    coverage = None
    if aoi is not None:
        g = src.gt
        aoi_px = aoi.area / abs(g[1] * g[5] - g[2] * g[4])
        coverage = round(min(1.0, covered / aoi_px), 3) if aoi_px > 0 else 0.0
    source = options.source or os.path.splitext(os.path.basename(path))[0]
    for d in dets:
        d.date, d.source = date, source
    crs = src.crs_wkt
    src.close()
    return CountResult(detections=dets, gsd_m=src.gsd_m, crs_wkt=crs, date=date, source=source,
                       blur_px=blur_px, sharpened=amount,
                       track_shift_m=round(math.hypot(*shift), 1),
                       track_shift_to=geo.compass(shift) if any(shift) else "",
                       coverage=coverage, score_threshold=round(min_score, 3),
                       shadow_side=side)
