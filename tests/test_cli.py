"""The command line: `make count` and `python3 -m railcar_counter.plugin.cli
count`, run as a user runs them, in a subprocess."""
import os
import subprocess
from pathlib import Path

import pytest
from osgeo import gdal

ROOT = Path(__file__).resolve().parent.parent
PY = "/usr/bin/python3"


def cli(*args, cwd=None):
    import railcar_counter
    env = dict(os.environ, PYTHONPATH=str(Path(railcar_counter.__path__[0]).parent),
               QT_QPA_PLATFORM="offscreen")
    return subprocess.run([PY, "-m", "railcar_counter.plugin.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_make_count(raster_factory, tmp_path):
    """The stable, scripted interface: make count INPUT=... OUTPUT=..."""
    path, _truth = raster_factory("yard_2023-10-05.tif")
    out = tmp_path / "out" / "cars.shp"
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "count", "INPUT=%s" % path,
                           "OUTPUT=%s" % out], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first.endswith("railcars (%s locomotives) in yard_2023-10-05.tif"
                          % first.split("(")[1].split()[0])
    count, locos = int(first.split()[0]), int(first.split("(")[1].split()[0])
    assert second == str(out)
    assert files_in(out.parent) == ["cars.cpg", "cars.dbf", "cars.prj", "cars.shp", "cars.shx"]
    # What it prints is what it wrote (accuracy is tested in test_processing).
    from qgis.core import QgsVectorLayer
    layer = QgsVectorLayer(str(out), "cars", "ogr")
    types = [f["type"] for f in layer.getFeatures()]
    assert (count, locos) == (len(types) - types.count("locomotive"), types.count("locomotive"))
    assert count > 0


def test_crs_for_an_image_without_one(raster_factory, world_file_jpeg, tmp_path):
    path, truth = raster_factory("yard.tif")
    jpeg = world_file_jpeg(path)
    out = tmp_path / "out" / "cars.shp"
    done = cli("count", "--input", jpeg, "--output", out)
    assert done.returncode == 1 and "--crs" in done.stderr and not out.exists()
    done = cli("count", "--input", jpeg, "--output", out, "--crs", "EPSG:%d" % truth["epsg"])
    assert done.returncode == 0, done.stderr
    from qgis.core import QgsVectorLayer
    layer = QgsVectorLayer(str(out), "cars", "ogr")
    assert layer.crs().authid() == "EPSG:%d" % truth["epsg"]
    assert abs(layer.featureCount() - truth["cars"]) <= max(1, truth["cars"] // 4)


def test_pixel_size_for_an_image_without_georeferencing(raster_factory, tmp_path):
    """A screen grab or photo (PNG, no world file) is refused with a message
    that names --pixel-size; with it, the cars are counted and drawn where
    QGIS draws the image (x = column, y = -row), with lengths in metres."""
    path, truth = raster_factory("yard.tif")
    photo = str(tmp_path / "photo.png")
    gdal.Translate(photo, path, format="PNG")
    for extra in tmp_path.glob("photo.png.aux.xml"):
        extra.unlink()
    out = tmp_path / "out" / "cars.gpkg"
    done = cli("count", "--input", photo, "--output", out)
    assert done.returncode == 1 and "--pixel-size" in done.stderr and not out.exists()
    done = cli("count", "--input", photo, "--output", out, "--pixel-size", "0")
    assert done.returncode == 1 and "--pixel-size" in done.stderr.splitlines()[-1]
    done = cli("count", "--input", photo, "--output", out, "--pixel-size", truth["gsd_m"])
    assert done.returncode == 0, done.stderr
    from qgis.core import QgsVectorLayer
    layer = QgsVectorLayer(str(out), "cars", "ogr")
    assert abs(layer.featureCount() - truth["cars"]) <= max(1, truth["cars"] // 4)
    width, height = gdal.Open(photo).RasterXSize, gdal.Open(photo).RasterYSize
    for f in layer.getFeatures():
        c = f.geometry().centroid().asPoint()
        assert 0 < c.x() < width and -height < c.y() < 0
        assert 9 < f["length_m"] < 25 and 2 < f["width_m"] < 4.5


def test_count_with_options_and_gpkg(raster_factory, vector_factory, tmp_path):
    path, truth = raster_factory("yard.tif", kind="geographic")
    xmin, ymin, xmax, ymax = truth["extent"]
    aoi = vector_factory("aoi.gpkg", ["POLYGON((%r %r, %r %r, %r %r, %r %r, %r %r))" % (
        xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax, xmin, ymin)], 4326)
    out = tmp_path / "cars.gpkg"
    done = cli("count", "--input", path, "--output", out, "--aoi", aoi,
               "--sensitivity", "0.5", "--date", "2020-01-31")
    assert done.returncode == 0, done.stderr
    assert "railcars" in done.stdout and out.exists()
    from qgis.core import QgsVectorLayer
    layer = QgsVectorLayer(str(out), "cars", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:4326"
    assert {f["date"] for f in layer.getFeatures()} <= {"2020-01-31"}


def test_refuses_to_overwrite(raster_factory, tmp_path):
    path, _ = raster_factory("yard.tif", n_cars=3, tracks=1)
    out = tmp_path / "cars.shp"
    assert cli("count", "-i", path, "-o", out).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("cars.*")}
    again = cli("count", "-i", path, "-o", out)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.glob("cars.*")}
    forced = cli("count", "-i", path, "-o", out, "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in tmp_path.glob("cars.*")) == sorted(p.name for p in before)


@pytest.mark.parametrize("args, words", [
    (["--input", "/nonexistent/scene.tif"], ["Input raster not found", "/nonexistent/scene.tif"]),
    (["--aoi", "/nonexistent/aoi.gpkg"], ["Area of interest not found"]),
    (["--sensitivity", "3"], ["between 0 and 1"]),
    (["--date", "someday"], ["YYYY-MM-DD"]),
    (["--output", "cars.xyz"], ["output format", ".gpkg"]),
    (["--crs", "EPSG:99999"], ["not a CRS", "EPSG:32652"]),
    (["--crs", "EPSG:4326"], ["not degrees", "UTM"]),
])
def test_user_errors_are_one_clear_line(raster_factory, tmp_path, args, words):
    path, _ = raster_factory("yard.tif", n_cars=2, tracks=1)
    full = ["count", "--input", path, "--output", tmp_path / "out" / "cars.shp"]
    if args[0] == "--output":
        args = ["--output", str(tmp_path / "out" / args[1])]
    for i in range(0, len(args), 2):
        if args[i] in full:
            full[full.index(args[i]) + 1] = args[i + 1]
        else:
            full += args[i:i + 2]
    done = cli(*full)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or files_in(tmp_path / "out") == []


def test_failed_run_leaves_no_half_written_output(tmp_path):
    """A raster the detector refuses (no georeferencing): the error is
    explained and no file (shapefile sidecars, staging folder) is left."""
    import numpy as np
    src = str(tmp_path / "photo.tif")
    ds = gdal.GetDriverByName("GTiff").Create(src, 32, 32, 1, gdal.GDT_Byte)
    ds.GetRasterBand(1).WriteArray(np.zeros((32, 32), dtype="uint8"))
    ds = None
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    done = cli("count", "-i", src, "-o", out_dir / "cars.shp")
    assert done.returncode == 1
    assert "georeferenc" in done.stderr.lower() and "Traceback" not in done.stderr
    assert files_in(out_dir) == []


def test_staged_output_cleans_up_on_failure(tmp_path):
    from railcar_counter.plugin.cli import staged_output
    out = tmp_path / "cars.shp"
    with pytest.raises(RuntimeError):
        with staged_output(str(out)) as staged:
            for ext in (".shp", ".shx", ".dbf"):
                Path(staged).with_suffix(ext).write_text("partial")
            raise RuntimeError("cancelled halfway")
    assert files_in(tmp_path) == []
    # On success every part is moved into place together.
    with staged_output(str(out)) as staged:
        for ext in (".shp", ".shx", ".dbf", ".prj"):
            Path(staged).with_suffix(ext).write_text("done")
    assert files_in(tmp_path) == ["cars.dbf", "cars.prj", "cars.shp", "cars.shx"]


def test_help_lists_subcommands():
    done = cli("--help")
    assert done.returncode == 0
    assert "count" in done.stdout
    missing = cli()
    assert missing.returncode == 2 and "COMMAND" in missing.stderr


def test_count_notes_a_sharpened_image_on_stderr(soft_yard, tmp_path):
    path, soft, _ = soft_yard
    done = cli("count", "--input", soft, "--output", tmp_path / "cars.gpkg")
    assert done.returncode == 0, done.stderr
    assert "soft.tif is softer than its pixel size" in done.stderr
    assert done.stdout.strip().splitlines()[0].endswith("locomotives) in soft.tif")
    sharp = cli("count", "--input", path, "--output", tmp_path / "cars2.gpkg")
    assert sharp.returncode == 0 and "softer" not in sharp.stderr


def test_tracks_layer_off_the_image_is_lined_up_with_the_cars(tmp_path):
    """OpenStreetMap tracks against a satellite image are often metres off.
    A layer 3.5 m off the tracks counts what the true tracks count, and
    the run says that it moved the lines and by how much."""
    import math
    import re
    from osgeo import ogr
    from shapely import affinity, wkt
    from conftest import UTM52N, write_vector
    from railcar_counter.plugin.core import synthetic
    from test_detector import YARD
    path, _ = synthetic.cached_scene(YARD, str(tmp_path))
    lines = [wkt.loads(w) for w in synthetic.load_scene_info(path)["tracks"]]
    az = math.radians(YARD.track_angle_deg)        # across the tracks: (cos az, -sin az)
    off = [affinity.translate(g, 3.5 * math.cos(az), -3.5 * math.sin(az)).wkt for g in lines]
    counts = {}
    for name, geoms in (("true", [g.wkt for g in lines]), ("off", off)):
        tracks = str(tmp_path / ("%s.gpkg" % name))
        write_vector(tracks, geoms, UTM52N, ogr.wkbLineString)
        done = cli("count", "--input", path, "--tracks", tracks,
                   "--output", tmp_path / ("cars_%s.gpkg" % name))
        assert done.returncode == 0, done.stderr
        counts[name] = int(done.stdout.split()[0])
        moved = re.search(r"lies about ([0-9.]+) m off this image", done.stderr)
        if name == "true":
            assert moved is None, done.stderr
        else:
            assert moved and abs(float(moved.group(1)) - 3.5) <= 0.5, done.stderr
    assert counts["true"] > 30 and abs(counts["off"] - counts["true"]) <= 1, counts


def test_pixels_coarser_than_a_metre_are_warned_about(raster_factory, tmp_path):
    coarse, _ = raster_factory("coarse.tif", gsd_m=1.2)
    fine, _ = raster_factory("fine.tif", gsd_m=1.0)
    done = cli("count", "--input", coarse, "--output", tmp_path / "c.gpkg")
    assert done.returncode == 0 and "Pixels of 1.20 m are coarser than 1 m" in done.stderr
    done = cli("count", "--input", fine, "--output", tmp_path / "f.gpkg")
    assert done.returncode == 0 and "coarser" not in done.stderr, done.stderr
