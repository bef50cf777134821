"""Which side shadows fall on, told by the cars themselves (shadows.py):
the geometry of a vote on a drawn car, and the fit of many votes."""
import math

import numpy as np
import pytest

from railcar_counter.plugin.core import shadows
from railcar_counter.plugin.core.verifier import strips


def test_shadows_fall_away_from_the_sun():
    """Pixel frame: x east, y south."""
    np.testing.assert_allclose(shadows.shadow_direction(180.0), (0.0, -1.0), atol=1e-12)  # north
    np.testing.assert_allclose(shadows.shadow_direction(90.0), (-1.0, 0.0), atol=1e-12)   # west
    np.testing.assert_allclose(shadows.shadow_direction(135.0), (-0.7071, -0.7071), atol=1e-4)


@pytest.mark.parametrize("theta_deg", [0.0, 30.0, 100.0, 200.0])
@pytest.mark.parametrize("sun_azimuth", [150.0, 240.0])
def test_a_car_votes_for_the_side_its_drawn_shadow_lies_on(theta_deg, sun_azimuth):
    """A bright car with its shadow drawn beside it, away from the sun: its
    vote (side_difference of its strip) says the shadow lies on the side
    that ShadowSide.reading gives for the true direction."""
    h = w = 140
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    th = math.radians(theta_deg)
    cx, cy = 70.2, 69.6
    along = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
    across = -(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)   # along across_axis
    s = shadows.shadow_direction(sun_azimuth)
    v = shadows.across_axis(th)
    away = 1.0 if s[0] * v[0] + s[1] * v[1] > 0 else -1.0
    image = np.full((h, w), 0.5, np.float32)
    on_car = (np.abs(along) < 26) & (np.abs(across) < 3)               # 0.5 m pixels
    image[(np.abs(along) < 26) & (away * across >= 3) & (away * across < 8)] = 0.15
    image[on_car] = 0.8
    strip = strips(np.stack([image, image]), [cx], [cy], [th])
    side = shadows.ShadowSide(s, 1.0, 1, 1.0)
    d = shadows.side_difference(strip[:, 0])[0]
    assert abs(d) > 0.2
    assert (d < 0) == side.reading(th)


def _votes(rng, thetas, direction, noise):
    v = np.stack([-np.sin(thetas), np.cos(thetas)], axis=1)
    return -0.1 * (v @ np.asarray(direction)) + rng.normal(0, noise, len(thetas))


def test_cars_on_tracks_running_several_ways_give_the_direction():
    rng = np.random.default_rng(1)
    thetas = rng.uniform(0, 2 * math.pi, 300)
    truth = shadows.shadow_direction(150.0)
    told = shadows.estimate(_votes(rng, thetas, truth, 0.05), thetas, np.full(300, 0.6))
    assert told.direction is not None and told.agreement > 0.5
    assert np.dot(told.direction, truth) > math.cos(math.radians(10))


def test_cars_on_parallel_tracks_give_the_side():
    """Every car on tracks running one way (either end first): the fit
    cannot see the shadows' slant along the tracks, but puts every car's
    shadow on its right side."""
    rng = np.random.default_rng(2)
    thetas = math.radians(20.0) + math.pi * rng.integers(0, 2, 200) + rng.normal(0, 0.02, 200)
    truth = shadows.shadow_direction(200.0)
    told = shadows.estimate(_votes(rng, thetas, truth, 0.08), thetas, np.full(200, 0.5))
    right = shadows.ShadowSide(truth, 1.0, 200, 100.0)
    assert told.direction is not None
    assert all(told.reading(t) == right.reading(t) for t in thetas)


def test_no_side_when_the_cars_disagree_or_are_too_few():
    rng = np.random.default_rng(3)
    thetas = rng.uniform(0, 2 * math.pi, 300)
    split = shadows.estimate(rng.normal(0, 0.1, 300), thetas, np.full(300, 0.6))
    assert split.direction is None and split.agreement < shadows.MIN_AGREEMENT
    truth = shadows.shadow_direction(150.0)
    few = shadows.estimate(_votes(rng, thetas[:3], truth, 0.0), thetas[:3], np.full(3, 0.5))
    assert few.direction is None and few.votes == 3
    assert not few.sure and not split.sure


def test_a_shadow_cast_along_its_car_has_no_side_to_read():
    """Sun at azimuth 90 (shadows fall west): a car running east-west
    casts its shadow past its end, and takes the side-unknown reading."""
    side = shadows.ShadowSide(shadows.shadow_direction(90.0), 1.0, 50, 30.0)
    assert side.reading(0.0) is None                     # axis east-west
    assert side.reading(math.radians(90.0)) is not None  # axis north-south
    assert shadows.ShadowSide(None, 0.0, 0, 0.0).reading(0.3) is None


def test_the_sun_stands_where_an_almanac_puts_it():
    """Noon on the equinox at 42 N: due south, 48 degrees high; 10:30 at
    the December solstice: south-east and low."""
    e, n, up = shadows.sun_vector(42.0, 80, 12.0)
    assert abs(e) < 1e-9 and n < 0
    assert math.degrees(math.asin(up)) == pytest.approx(48.0, abs=1.0)
    e, n, up = shadows.sun_vector(42.0, 355, 10.5)
    azimuth = math.degrees(math.atan2(e, n)) % 360
    assert 140 < azimuth < 160 and 15 < math.degrees(math.asin(up)) < 22


def test_by_day_shadows_fall_towards_the_pole_within_a_spread_that_the_date_gives():
    winter = shadows.daytime_shadows(42.4, "2022-12-01")
    (e, n), spread = winter
    assert abs(e) < 1e-6 and n == pytest.approx(1.0)             # north
    assert 30 < spread < 40            # between 9:30 and 14:30 the sun stays low in the south
    (e, n), equinox = shadows.daytime_shadows(42.4, "2022-03-21")
    assert n == pytest.approx(1.0) and equinox > spread            # it swings wider
    (e, n), south = shadows.daytime_shadows(-35.0, "2022-06-21")
    assert n == pytest.approx(-1.0)                                # southern hemisphere
    # summer mornings put the sun in the east, the tropics put it north or south
    assert shadows.daytime_shadows(42.4, "2022-06-21") is None
    assert shadows.daytime_shadows(5.0, "2022-03-21") is None
    assert shadows.daytime_shadows(42.4, "") is None
    assert shadows.daytime_shadows(42.4, "2022-02-30") is None


def test_the_date_tells_the_side_where_the_votes_do_not():
    """Too few votes: the date's direction, read only for cars that no
    direction within its spread (60 degrees) puts clearly on the other
    side: across axes within 90 + 17.5 - 60 degrees of north."""
    rng = np.random.default_rng(4)
    thetas = rng.uniform(0, 2 * math.pi, 3)
    north = (0.0, -1.0)                                   # pixel frame, north up
    told = shadows.estimate(rng.normal(0, 0.1, 3), thetas, np.full(3, 0.5), (north, 60.0))
    assert told.by_date and told.direction == north and not told.sure
    assert told.min_across == pytest.approx(math.cos(math.radians(47.5)), abs=0.002)
    winter = shadows.estimate([], [], [], (north, 20.0))
    assert winter.min_across == shadows.ALONG_SHADOW      # a narrow spread: as the votes
    # an east-west track: the shadow lies north, on its strip's first rows' side
    assert told.reading(0.0) is False
    assert told.reading(math.radians(90.0)) is None    # north-south track: morning or afternoon?
    assert told.reading(math.radians(60.0)) is None    # 30 degrees off north-south: still in doubt
    assert told.reading(math.radians(30.0)) is False
    # cars that agree are believed over the date
    truth = shadows.shadow_direction(300.0)
    many = rng.uniform(0, 2 * math.pi, 300)
    votes = shadows.estimate(_votes(rng, many, truth, 0.05), many, np.full(300, 0.6), (north, 60.0))
    assert not votes.by_date and np.dot(votes.direction, truth) > 0.95
