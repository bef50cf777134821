"""railcarcounter:countseries run for real through processing.run on
generated rasters: one layer for all dates, the counts CSV with baseline
statistics, the chart PNG and the summary sentence."""
import csv
import os

import pytest
from qgis.core import QgsProcessingException, QgsVectorLayer

from railcar_counter.plugin.core import detector


def run(params):
    import processing
    return processing.run("railcarcounter:countseries", params)


@pytest.fixture()
def series(raster_factory):
    out = []
    for date, n in (("2019-04-01", 4), ("2020-04-01", 5), ("2021-04-01", 4),
                    ("2022-04-01", 5), ("2023-10-05", 14)):
        path, _truth = raster_factory("site_%s.tif" % date, bands=3, n_cars=n, tracks=1)
        out.append((date, path))
    return out


def test_countseries_writes_layer_csv_chart_and_summary(processing_ready, series, tmp_path):
    # Inputs in shuffled order: the outputs are sorted by date.
    paths = [p for _d, p in reversed(series)]
    hist = tmp_path / "history.csv"
    hist.write_text("date,count,note\n2017-04-01,3,old report\n")
    res = run({"INPUT": paths, "IMPORTED": str(hist),
               "OUTPUT": str(tmp_path / "cars.gpkg"),
               "COUNTS_CSV": str(tmp_path / "counts.csv"),
               "CHART": str(tmp_path / "chart.png")})
    expected = {d: detector.count_railcars(p, detector.CountOptions()).count for d, p in series}
    layer = QgsVectorLayer(res["OUTPUT"], "cars", "ogr")
    assert layer.isValid()
    per_date = {}
    for f in layer.getFeatures():
        if f["type"] != "locomotive":
            per_date[f["date"]] = per_date.get(f["date"], 0) + 1
    assert {d: per_date.get(d, 0) for d in expected} == expected
    rows = list(csv.DictReader(open(res["COUNTS_CSV"])))
    assert [r["date"] for r in rows] == ["2017-04-01"] + [d for d, _p in series]
    assert rows[0]["source"] == "imported"
    assert [int(r["count"]) for r in rows[1:]] == [expected[d] for d, _p in series]
    last = rows[-1]
    assert last["in_baseline"] == "no" and last["baseline_n"] == "5"
    assert os.path.getsize(res["CHART"]) > 5000
    with open(res["CHART"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert res["SUMMARY"].startswith("2023-10-05: %d railcar" % expected["2023-10-05"])
    assert "2017-2022" in res["SUMMARY"]
    assert res["LATEST_COUNT"] == expected["2023-10-05"]
    assert res["BREAKS"] == sum(1 for r in rows if r["breaks_baseline"] == "yes")


def test_countseries_window_and_dates_parameters(processing_ready, series, tmp_path):
    paths = [p for _d, p in series]
    res = run({"INPUT": paths, "WINDOW": 2, "START": "2020-01-01", "END": "2021-12-31",
               "DATES": "-, -, -, -, 2024-01-02",
               "OUTPUT": "memory:", "COUNTS_CSV": str(tmp_path / "c.csv"),
               "CHART": str(tmp_path / "c.png")})
    rows = list(csv.DictReader(open(res["COUNTS_CSV"])))
    assert [r["date"] for r in rows if r["in_baseline"] == "yes"] == ["2020-04-01", "2021-04-01"]
    assert rows[-1]["date"] == "2024-01-02"
    assert res["SUMMARY"].startswith("2024-01-02:")


def test_countseries_errors_say_what_to_do(processing_ready, raster_factory, tmp_path):
    undated, _ = raster_factory("yard.tif", n_cars=3, tracks=1)
    with pytest.raises(QgsProcessingException, match="No acquisition date for yard"):
        run({"INPUT": [undated], "OUTPUT": "memory:",
             "COUNTS_CSV": str(tmp_path / "c.csv"), "CHART": str(tmp_path / "c.png")})
    with pytest.raises(QgsProcessingException, match="DATES lists 2 date"):
        run({"INPUT": [undated], "DATES": "2020-01-01, 2021-01-01", "OUTPUT": "memory:",
             "COUNTS_CSV": str(tmp_path / "c.csv"), "CHART": str(tmp_path / "c.png")})
    bad = tmp_path / "bad.csv"
    bad.write_text("2020-01-01,many\n")
    with pytest.raises(QgsProcessingException, match="line 1: count 'many'"):
        run({"INPUT": [undated], "DATES": "2021-01-01", "IMPORTED": str(bad),
             "OUTPUT": "memory:", "COUNTS_CSV": str(tmp_path / "c.csv"),
             "CHART": str(tmp_path / "c.png")})


# ------------------------------------------------------------ command line
def cli(*args, cwd=None):
    """Run the command line as a user does, in its own process."""
    import subprocess
    import sys
    import railcar_counter
    base = os.path.dirname(railcar_counter.__path__[0])
    env = dict(os.environ, PYTHONPATH=base)
    return subprocess.run([sys.executable, "-m", "railcar_counter.plugin.cli"] + list(args),
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_series_command_writes_outputs_and_never_overwrites(series, tmp_path):
    paths = [p for _d, p in series]
    args = ["series", "-i"] + paths + ["-o", str(tmp_path / "out" / "cars.shp"),
                                       "--csv", str(tmp_path / "out" / "counts.csv"),
                                       "--chart", str(tmp_path / "out" / "chart.png")]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("2023-10-05: ")
    for name in ("cars.shp", "cars.dbf", "counts.csv", "chart.png"):
        assert (tmp_path / "out" / name).exists(), name
    again = cli(*args)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    assert cli(*(args + ["--overwrite"])).returncode == 0


def test_demo_folder_never_overwrites_by_surprise(tmp_path):
    import datetime
    from railcar_counter.plugin import cli_series
    out = tmp_path / "demo_output"
    assert cli_series.demo_folder(str(out)) == str(out)                 # new
    out.mkdir()
    (out / "counts.csv").write_text("old")
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert cli_series.demo_folder(str(out), now=now) == str(out / "demo_20260102_030405")
    assert cli_series.demo_folder(str(out), overwrite=True) == str(out)
    assert not (out / "counts.csv").exists()


def test_demo_command_end_to_end(tmp_path):
    """The README's demo: 9 dates over 5 years with a surge on the last one,
    counted end to end; shapefiles, CSV, chart and a QGIS project written."""
    out = tmp_path / "demo"
    done = cli("demo", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = [l for l in done.stdout.splitlines() if l.startswith("2023-10-05: ")]
    assert summary, done.stdout
    rows = list(csv.DictReader(open(out / "counts.csv")))
    dates = [r["date"] for r in rows]
    assert len(dates) >= 8 and int(dates[-1][:4]) - int(dates[0][:4]) >= 5
    assert rows[-1]["in_baseline"] == "no"
    assert all(r["in_baseline"] == "yes" for r in rows[:-1])
    for name in ("railcars_all_dates.shp", "chart.png", "chart.svg", "demo.qgz"):
        assert (out / name).exists(), name
    per_date = sorted(p.name for p in (out / "detections").glob("*.shp"))
    assert per_date == ["railcars_%s.shp" % d for d in dates]
    # The project opens with the panel's state: each date linked to its layer.
    import json
    from qgis.core import QgsProject
    project = QgsProject.instance()
    assert project.read(str(out / "demo.qgz"))
    state = json.loads(project.readEntry("RailcarCounter", "state", "")[0])
    assert sorted(r["date"] for r in state["rows"].values()) == dates
    for lid, r in state["rows"].items():
        assert project.mapLayer(lid) is not None
        det = project.mapLayer(r["det_layer_id"])
        assert det is not None and det.temporalProperties().isActive()
        assert r["count"] == int(next(x["count"] for x in rows if x["date"] == r["date"]))
    project.clear()
