"""Count railcars on one raster: the entry point shared by the dock,
Processing and the command line. Pure numpy/GDAL/shapely, no Qt."""
from dataclasses import dataclass, field

from .detections import Detection


@dataclass
class CountOptions:
    """What the analyst chose. Geometries are WKT in the raster's CRS."""
    sensitivity: float = 0.5          # 0 (strict) .. 1 (finds more, risks more)
    aoi_wkt: list = field(default_factory=list)      # polygons; empty = whole raster
    tracks_wkt: list = field(default_factory=list)   # lines; empty = find tracks
    date: str = ""                    # ISO date; empty = read from name/metadata
    source: str = ""                  # name shown in the 'source' field


@dataclass
class CountResult:
    detections: list          # [Detection], all types, centres inside the AOI
    gsd_m: float              # pixel size of the raster in metres
    crs_wkt: str
    date: str
    source: str

    @property
    def count(self):
        """Freight cars: locomotives are reported apart."""
        return sum(1 for d in self.detections if d.is_freight())

    @property
    def locomotives(self):
        return sum(1 for d in self.detections if not d.is_freight())


def count_railcars(path, options=None, progress=None, is_canceled=None):
    """Detect every railcar on the raster at ``path``.

    ``progress(fraction)`` is called with 0..1; ``is_canceled()`` is polled
    between windows and raises :class:`errors.Canceled` when it says True.
    Raises :class:`errors.InputError` for input the detector cannot use.
    """
    raise NotImplementedError("detector being written")
