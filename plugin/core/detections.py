"""Detections: one oriented rectangle per railcar, in plain Python.

No Qt and no QGIS here: the dock, the Processing algorithms and the command
line all build their layers from these records.
"""
from dataclasses import dataclass, field
import math

# Car types the detector reports. Locomotives are reported apart from
# freight cars: analysts publish them separately.
CAR_TYPES = ("box", "tank", "open", "flat", "covered", "locomotive", "unknown")
FREIGHT_TYPES = tuple(t for t in CAR_TYPES if t != "locomotive")


@dataclass
class Detection:
    """One railcar as an oriented rectangle in the raster's CRS.

    ``angle`` is the azimuth of the car's long axis in degrees, clockwise from
    grid north, in [0, 180). ``corners`` are the four corners in map units of
    the raster's CRS (a closed ring is made by the caller).
    """
    cx: float
    cy: float
    length_m: float
    width_m: float
    angle: float
    score: float
    type: str = "unknown"
    corners: list = field(default_factory=list)
    date: str = ""      # ISO date (YYYY-MM-DD) or "" when unknown
    source: str = ""    # raster name

    def ring(self):
        """Closed ring of (x, y) map coordinates."""
        return list(self.corners) + [self.corners[0]]

    def wkt(self):
        return "POLYGON((%s))" % ", ".join("%.10g %.10g" % p for p in self.ring())

    def is_freight(self):
        return self.type != "locomotive"


def rectangle_corners(cx, cy, length, width, azimuth_deg):
    """Corners of a rectangle centred on (cx, cy) whose long axis points to
    ``azimuth_deg`` (clockwise from +y). Units are whatever cx/cy use; the
    frame must be isotropic (metres, or working pixels with y up)."""
    a = math.radians(azimuth_deg)
    ux, uy = math.sin(a), math.cos(a)      # along the car
    vx, vy = uy, -ux                       # across the car
    hl, hw = length / 2.0, width / 2.0
    return [
        (cx + ux * hl + vx * hw, cy + uy * hl + vy * hw),
        (cx - ux * hl + vx * hw, cy - uy * hl + vy * hw),
        (cx - ux * hl - vx * hw, cy - uy * hl - vy * hw),
        (cx + ux * hl - vx * hw, cy + uy * hl - vy * hw),
    ]
