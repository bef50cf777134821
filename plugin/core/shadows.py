"""Which way shadows fall on an image, told by the image itself (numpy only).

A car's shadow lies on one side of it, the side away from the sun, and on
the next track it looks like a dark car. The shadow-side verifier
(verifier.py) tells the two apart far better when it knows that side:
given each scene's true sun, F1 on the dense 0.5 m tuning yards rose from
0.969 to 0.979 and false cars halved. But a wrong side costs far more
than none (F1 0.803 with the sun turned by 180 degrees), so the side is
used only when the image is sure.

Every likely car votes with the ground just beside it, 1.6-2.8 m from
its axis on either side: the gap between it and the next track, where its
shadow lies whatever the sun's height (bands farther out mostly hold the
next track's car, whose colour drowns the shadow: 2-6 m agreed half as
well, and put a winter yard's shadows on no side). The votes, fitted
together, give the direction shadows fall in, and how well they agree
says whether to trust it. A vote is the sign of the difference, and
weighs as much as its car is likely (heat times the side-unknown
verifier's probability).

A quiet yard under a low sun may not tell: its few cars' long shadows,
boxed on the next track, outvote the cars (a winter yard of 12 cars: 6 of
12 found, 7 false). Where the image's date and latitude are known, the sun
then tells (daytime_shadows): imagery is taken by day, near noon, and
away from the tropics the sun stands on the equator's side of the sky, so
shadows fall towards the pole, within an angle that the date and latitude
give. Cars whose side that angle leaves in doubt are read without it.
Best of all is the sun's azimuth in the product's metadata (from_sun):
where it is there, it tells the side before any vote.
"""
from dataclasses import dataclass
import datetime
import math

import numpy as np

from .network import INPUT_GSD

VOTE_HEAT = 0.3           # candidates this sure (network heat) vote
SIDE_BAND_M = (1.6, 2.8)  # across the axis: the ground compared on each side
ALONG_M = 5.0             # along the axis, each way from the centre
# The side is used where the votes agree this well (1: all say the same,
# 0: an even split) and this far beyond chance (ShadowSide.z: how many
# standard errors of an even split). On the 15 tuning scenes, 8 quiet yards
# and 11 tuning yards remade with the sun 0-35 degrees off the tracks (t01,
# t03), every scene told had the side right for every car (86-99 % on
# curved yards with the sun along the tracks, where some cars' shadows
# fall past their ends): dense yards gave
# z 3.4-12, quiet yards of 6-24 cars 1.1-3.3 (those under 2 are read
# without the side). One wrong side: an empty 0.7 m yard, z 3.9, where
# dark bushes beside the tracks were taken for cars, weighing 3.1 in all:
# read with that wrong side it boxes 12 false cars, against 11 without.
MIN_AGREEMENT = 0.15
MIN_Z = 2.0
MIN_WEIGHT = 2.0          # less: too few likely cars to judge the side by (4-5 sure ones)
# Sure enough to read the rest of the image with that side alone (the
# detector then skips the other readings): surer than the image as a
# whole needs to be, as the votes come from part of it.
SURE_WEIGHT = 40.0
SURE_Z = 4.0
RIDGE = 0.05              # keeps the fit stable when every track runs one way
# A shadow this little across its car (the cosine between the shadow's
# direction and the car's across_axis) falls past the car's ends: no side
# to read it by. Cars on parallel tracks always have the side (the fit
# cannot see the shadows' slant along them); on curved yards with the sun
# along the tracks, some cars do not.
ALONG_SHADOW = 0.3
# Local solar hours that imagery is taken between: very high resolution
# satellites pass at about 10:30 (WorldView, Pleiades, SPOT, Sentinel-2)
# or 13:30, aerial surveys fly around noon.
IMAGING_HOURS = (9.5, 14.5)
# Shadows spread wider than this over those hours (the tropics, summer
# mornings and afternoons at low latitudes): the sun does not tell.
MAX_SPREAD_DEG = 70.0


def ground_shadow(sun_azimuth_deg):
    """The unit vector (east, north) along which shadows fall on the
    ground, for a sun at ``sun_azimuth_deg`` clockwise from north."""
    az = math.radians(sun_azimuth_deg)
    return -math.sin(az), -math.cos(az)


def shadow_direction(sun_azimuth_deg):
    """The same in a north-up pixel frame (x east, y south)."""
    east, north = ground_shadow(sun_azimuth_deg)
    return east, -north


def sun_vector(latitude_deg, day_of_year, hour):
    """The direction of the sun as (east, north, up), a unit vector, at a
    local solar ``hour`` (12: noon) on a day of the year (1-366)."""
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365.0)
    h = math.radians(15.0 * (hour - 12.0))
    lat = math.radians(latitude_deg)
    return (-math.cos(decl) * math.sin(h),
            math.cos(lat) * math.sin(decl) - math.sin(lat) * math.cos(decl) * math.cos(h),
            math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(h))


def daytime_shadows(latitude_deg, iso_date):
    """Where shadows fall on the ground on ``iso_date`` at a latitude,
    over IMAGING_HOURS: (east, north) unit vector of their mean direction
    and the largest angle, in degrees, of any of them from it. None where
    the date cannot be read, the sun is down at some of those hours, or
    the shadows spread over more than MAX_SPREAD_DEG."""
    try:
        doy = datetime.date.fromisoformat(iso_date[:10]).timetuple().tm_yday
    except (ValueError, TypeError):
        return None
    dirs = []
    h0, h1 = IMAGING_HOURS
    for k in range(21):
        e, n, up = sun_vector(latitude_deg, doy, h0 + (h1 - h0) * k / 20.0)
        flat = math.hypot(e, n)
        if up <= 0.05 or flat < 1e-6:
            return None
        dirs.append((-e / flat, -n / flat))
    me, mn = (sum(v) / len(dirs) for v in zip(*dirs))
    norm = math.hypot(me, mn)
    if norm < 1e-6:
        return None
    me, mn = me / norm, mn / norm
    spread = max(math.degrees(math.acos(max(-1.0, min(1.0, e * me + n * mn)))) for e, n in dirs)
    return ((me, mn), spread) if spread <= MAX_SPREAD_DEG else None


def across_axis(theta):
    """The unit vector across a car's axis (``theta``, radians, pixel frame)
    that strips' rows run along (verifier.strips): their last rows lie on
    its side."""
    return -math.sin(theta), math.cos(theta)


def side_difference(brightness):
    """Brightness on the last rows' side of each strip minus the first
    rows' (N, W, L strips of one channel at the network's 0.5 m): negative
    where the shadow lies on the last rows' side."""
    n, w, length = brightness.shape
    v = (np.arange(w) - (w - 1) / 2.0) * INPUT_GSD
    u = (np.arange(length) - (length - 1) / 2.0) * INPUT_GSD
    near, far = SIDE_BAND_M
    plus = (v >= near) & (v <= far)
    minus = (v <= -near) & (v >= -far)
    centre = brightness[:, :, np.abs(u) <= ALONG_M]
    return centre[:, plus].mean(axis=(1, 2)) - centre[:, minus].mean(axis=(1, 2))


@dataclass
class ShadowSide:
    """The direction shadows fall in, in the pixel frame, or None when the
    image does not tell; ``agreement`` and ``z`` as MIN_AGREEMENT and
    MIN_Z, from ``votes`` cars weighing ``weight`` in all."""
    direction: tuple
    agreement: float
    votes: int
    weight: float
    z: float = 0.0
    # where the direction is the date's and latitude's (daytime_shadows),
    # not the votes': how far, in degrees, shadows may be off it
    spread_deg: float = None
    # where the direction is the sun's azimuth (degrees) that the image's
    # metadata gives (from_sun)
    sun_azimuth: float = None

    @property
    def by_date(self):
        return self.spread_deg is not None

    @property
    def min_across(self):
        """The least |cos| between the direction and a car's across_axis
        for its side to be read. For a side told by the date, no direction
        within the spread may put a car's shadow clearly (ALONG_SHADOW or
        more) on the other side: the car's across axis must lie within 90
        + asin(ALONG_SHADOW) - spread degrees of the direction (read with
        every vote off, this cut the false cars of 23 dated yards, 4 of them
        lit from the afternoon, from 30 to 13, against requiring the same
        side for every direction)."""
        if self.spread_deg is None:
            return ALONG_SHADOW
        edge = math.radians(self.spread_deg) - math.asin(ALONG_SHADOW)
        return max(ALONG_SHADOW, math.sin(edge))

    @property
    def sure(self):
        if self.sun_azimuth is not None:
            return True
        return (self.direction is not None and not self.by_date and self.weight >= SURE_WEIGHT
                and self.z >= SURE_Z)

    def reading(self, theta):
        """Which reading of a car (axis ``theta``) to take: True where its
        shadow falls on its strip's last rows' side, False on the first's,
        None where the side is not told or the shadow falls along the car
        (or may, for a side told by the date)."""
        if self.direction is None:
            return None
        ux, uy = self.direction
        vx, vy = across_axis(theta)
        across = ux * vx + uy * vy
        return None if abs(across) < self.min_across else across > 0


def from_sun(azimuth_deg, direction):
    """The side told by the sun's azimuth from the image's metadata
    (WorldView's meanSunAz, Pleiades' SUN_AZIMUTH): ``direction``, the
    shadows' direction in the pixel frame, is exact, so no vote is needed."""
    return ShadowSide((float(direction[0]), float(direction[1])), 1.0, 0, 0.0,
                      sun_azimuth=round(float(azimuth_deg), 1))


def estimate(differences, thetas, weights, by_date=None):
    """The shadow side from the votes of likely cars: each car's
    side_difference, axis and weight (how likely it is a car). A vote is
    the sign of its difference (a white car beside a black one must not
    outvote ten cars' shadows). The votes are fitted as sign(d) =
    -(s . v) (s: the shadow direction, v: across_axis), so cars on tracks
    running several ways give s itself, and cars on parallel tracks at
    least the side. Where the votes do not tell, ``by_date`` (the
    direction in the pixel frame and the spread, in degrees, from
    daytime_shadows) does: a car's side is read where no direction within
    the spread puts its shadow clearly on the other side."""
    d = np.sign(np.asarray(differences, np.float64))
    th = np.asarray(thetas, np.float64)
    w = np.asarray(weights, np.float64)
    total = float(w.sum())
    told = ShadowSide(None, 0.0, len(d), round(total, 1))
    if total >= MIN_WEIGHT:
        _fit(told, d, th, w)
    if told.direction is None and by_date is not None:
        (sx, sy), spread = by_date
        told.direction = (float(sx), float(sy))
        told.spread_deg = float(spread)
    return told


def _fit(told, d, th, w):
    """The votes' shadow direction into ``told`` where they agree enough."""
    v = np.stack([-np.sin(th), np.cos(th)], axis=1)
    m = (v * w[:, None]).T @ v
    r = (v * (w * d)[:, None]).sum(axis=0)
    b = np.linalg.solve(m + RIDGE * np.trace(m) * np.eye(2), r)
    if not np.any(b):
        return
    s = -b / np.linalg.norm(b)
    along = np.abs(v @ s)
    agreement = float(-(w * d * (v @ s)).sum() / max((w * along).sum(), 1e-12))
    told.agreement = round(agreement, 3)
    # as many standard errors as an even split would give (sqrt of the
    # votes' effective number, each weighed by how much it says of s)
    told.z = round(agreement * float((w * along).sum() / np.sqrt(((w * along) ** 2).sum())), 2)
    if told.agreement >= MIN_AGREEMENT and told.z >= MIN_Z:
        told.direction = (float(s[0]), float(s[1]))
