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
    assert res["SUMMARY"].startswith("2023-10-05: %d railcars" % expected["2023-10-05"])
    assert "(2017-2022)" in res["SUMMARY"]
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
