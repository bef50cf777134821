"""Acquisition dates from names and metadata (plugin/core/dates.py)."""
import pytest
from osgeo import gdal, osr

from railcar_counter.plugin.core.dates import (
    date_from_metadata, date_from_text, raster_date)


@pytest.mark.parametrize("text, iso", [
    ("tumangang_2023-10-05", "2023-10-05"),
    ("tumangang_20231005", "2023-10-05"),
    ("tumangang_2023_10_05.tif", "2023-10-05"),
    ("yard 05.10.2023", "2023-10-05"),
    ("yard_05-10-2023", "2023-10-05"),
    ("2023.10.05", "2023-10-05"),
    ("2023:10:05 10:30:00", "2023-10-05"),
    ("2023-10-05T10:30:00.000Z", "2023-10-05"),
    ("S2A_MSIL2A_20231005T103021_N0509_R108", "2023-10-05"),
    ("WV3_20231005103021_P001", "2023-10-05"),
    ("2023-1-5", "2023-01-05"),
    # Satellite product names and how analysts write dates in words.
    ("18JUN05095432-P2AS-012345678901_01_P001", "2018-06-05"),          # Maxar
    ("IMG_PHR1A_PMS_202310050212345_ORT_1234567101", "2023-10-05"),     # Pleiades
    ("tumangang 5 Oct 2023", "2023-10-05"),
    ("tumangang_05OCT2023", "2023-10-05"),
    ("Tumangang_Sept_30_2023", "2023-09-30"),
    ("October 5th, 2023", "2023-10-05"),
    ("scene_mar2023", ""),            # no day: not a date
    ("tile_12may", ""),
    ("31 Feb 2023", ""),
    # Not dates: the answer is "" rather than a guess.
    ("", ""),
    (None, ""),
    ("scene", ""),
    ("tile_123456789", ""),
    ("utm_52n_4702315", ""),
    ("2023-13-05", ""),
    ("20230230", ""),
    ("v1.2.3", ""),
    ("0001-01-01", ""),
])
def test_date_from_text(text, iso):
    assert date_from_text(text) == iso


def test_first_valid_date_wins_and_year_first_preferred():
    assert date_from_text("2019-06-01_to_2020-01-01") == "2019-06-01"
    # An invalid year-first candidate is skipped, the next one is used.
    assert date_from_text("id20231399_20220405") == "2022-04-05"
    assert date_from_text("01.02.2020 and 2021-03-04") == "2021-03-04"


def test_date_from_metadata_prefers_acquisition_keys():
    md = {"TIFFTAG_DATETIME": "2024:01:02 08:00:00",
          "ACQUISITIONDATETIME": "2023-10-05T02:31:10.000Z"}
    assert date_from_metadata(md) == "2023-10-05"
    assert date_from_metadata({"TIFFTAG_DATETIME": "2023:10:05 10:30:00"}) == "2023-10-05"
    assert date_from_metadata({"imaging_date": "2021-07-08"}) == "2021-07-08"
    assert date_from_metadata({"DATE_ACQUIRED": "2020-02-29"}) == "2020-02-29"
    # Unknown key that names a date still counts; unrelated keys do not.
    assert date_from_metadata({"MY_CAPTURE_TIME": "2022-03-04 12:00"}) == "2022-03-04"
    assert date_from_metadata({"AREA_OR_POINT": "Area", "ID": "20231005"}) == ""
    assert date_from_metadata({}) == ""
    assert date_from_metadata(None) == ""
    assert date_from_metadata({"TIFFTAG_DATETIME": "not a date"}) == ""


def _tif(path, metadata=None):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 4, 4, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((500000, 0.5, 0, 4700000, 0, -0.5))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32652)
    ds.SetProjection(srs.ExportToWkt())
    if metadata:
        ds.SetMetadata(metadata)
    ds.FlushCache()
    ds = None
    return str(path)


def test_raster_date_from_name(tmp_path):
    path = _tif(tmp_path / "yard_20231005.tif", {"TIFFTAG_DATETIME": "2024:01:01 00:00:00"})
    # The name wins: analysts name images by acquisition date.
    assert raster_date(path) == "2023-10-05"
    assert raster_date(path + "|layerid=0") == "2023-10-05"


def test_raster_date_from_metadata(tmp_path):
    path = _tif(tmp_path / "yard.tif", {"TIFFTAG_DATETIME": "2023:10:05 10:30:00"})
    assert raster_date(path) == "2023-10-05"


def test_raster_date_from_folder(tmp_path):
    folder = tmp_path / "2022-06-30"
    folder.mkdir()
    assert raster_date(_tif(folder / "yard.tif")) == "2022-06-30"


def test_raster_date_unknown(tmp_path):
    assert raster_date(_tif(tmp_path / "yard.tif")) == ""
    assert raster_date(str(tmp_path / "missing.tif")) == ""
    assert raster_date("") == ""
