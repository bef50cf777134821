"""Acquisition dates of rasters, from their names or their metadata.

Pure Python plus GDAL: the dock, Processing and the command line all use this
so one image gets the same date wherever it is counted. Dates are returned as
ISO strings ("YYYY-MM-DD"), or "" when none is found: a wrong date is worse
than none, so anything that is not a real calendar date is ignored.
"""
import datetime
import os
import re

# Years outside this range are almost always numbers that are not dates
# (tile ids, UTM northings ...).
_MIN_YEAR = 1950
_MAX_YEAR = 2100

# Year first with one repeated separator: 2023-10-05, 2023_10_05, 2023.10.05,
# 2023/10/05, 2023:10:05 (TIFF/EXIF), 2023 10 05. Month and day may have one digit.
_YMD_SEP = re.compile(r"(?<!\d)(\d{4})([-_./: ])(\d{1,2})\2(\d{1,2})(?!\d)")
# Compact year first: 20231005, also followed by a time (20231005T103000,
# 20231005103000, Pleiades' 202310050212345) as satellite product names have.
_YMD_COMPACT = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?=T\d|\d{6,7}(?!\d)|(?!\d))")
# Day first (European): 05.10.2023, 05-10-2023, 05_10_2023, 05/10/2023.
_DMY_SEP = re.compile(r"(?<!\d)(\d{1,2})([-_./])(\d{1,2})\2(\d{4})(?!\d)")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MON = "(" + "|".join(_MONTHS) + ")"
_MONTH = _MON + r"[a-z]*\.?"         # Oct, Oct., October, Sept
# Month names: 5 Oct 2023, 05OCT2023, 5-October-2023 and Oct 5, 2023,
# October_5_2023 (how analysts name their captures).
_DAY_MONTH_YEAR = re.compile(r"(?<![a-z\d])(\d{1,2})[ _-]?" + _MONTH + r"[ _,-]*(\d{4})(?!\d)",
                             re.I)
_MONTH_DAY_YEAR = re.compile(r"(?<![a-z\d])" + _MONTH +
                             r"[ _-]?(\d{1,2})(?:st|nd|rd|th)?[ _,-]+(\d{4})(?!\d)", re.I)
# Maxar (DigitalGlobe) product names: two-digit year, month, day and a
# six-digit time, 23OCT05023456-M1BS-...
_MAXAR = re.compile(r"(?<![a-z\d])(\d{2})" + _MON + r"(\d{2})\d{6}(?!\d)", re.I)

# Metadata items that hold the acquisition date, best first. TIFFTAG_DATETIME
# is often the processing time rather than the acquisition time, so it comes
# after the keys that say "acquisition" or "imaging".
METADATA_KEYS = (
    "ACQUISITIONDATETIME",       # GDAL IMAGERY domain (DigitalGlobe, Pleiades ...)
    "ACQUISITION_DATETIME",
    "ACQUISITION_DATE",
    "ACQUISITIONDATE",
    "IMAGING_DATE",
    "IMAGINGDATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "SENSING_DATE",
    "DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "FIRSTLINETIME",
    "EARLIESTACQTIME",
    "EXIF_DATETIMEORIGINAL",
    "EXIF_DATETIMEDIGITIZED",
    "CAPTURE_DATE",
    "DATE",
    "TIFFTAG_DATETIME",
    "EXIF_DATETIME",
    "DATETIME",
)

# GDAL metadata domains where sensors and drivers put acquisition times.
_DOMAINS = ("", "IMAGERY", "IMD", "EXIF", "xml:XMP")


def _iso(year, month, day):
    try:
        year, month, day = int(year), int(month), int(day)
        if not _MIN_YEAR <= year <= _MAX_YEAR:
            return ""
        return datetime.date(year, month, day).isoformat()
    except ValueError:
        return ""


def date_from_text(text):
    """The first calendar date written in ``text`` as "YYYY-MM-DD", or "".

    Understands 2023-10-05, 2023_10_05, 2023.10.05, 2023:10:05 10:30:00,
    20231005, 20231005T103000, day-first 05.10.2023 / 05-10-2023, month
    names (5 Oct 2023, 05OCT2023, Oct 5, 2023) and Maxar's 23OCT05023456.
    Year-first forms win over the others; invalid dates are skipped.
    """
    if not text:
        return ""
    text = str(text)
    for m in _YMD_SEP.finditer(text):
        iso = _iso(m.group(1), m.group(3), m.group(4))
        if iso:
            return iso
    for m in _YMD_COMPACT.finditer(text):
        iso = _iso(m.group(1), m.group(2), m.group(3))
        if iso:
            return iso
    for m in _DMY_SEP.finditer(text):
        iso = _iso(m.group(4), m.group(3), m.group(1))
        if iso:
            return iso
    for pattern, (y, mo, d) in ((_DAY_MONTH_YEAR, (3, 2, 1)), (_MONTH_DAY_YEAR, (3, 1, 2)),
                                (_MAXAR, (1, 2, 3))):
        for m in pattern.finditer(text):
            year = m.group(y) if len(m.group(y)) == 4 else "20" + m.group(y)
            iso = _iso(year, _MONTHS.index(m.group(mo).lower()[:3]) + 1, m.group(d))
            if iso:
                return iso
    return ""


def date_from_metadata(metadata):
    """Acquisition date from a metadata mapping (GDAL's ``GetMetadata()``),
    or "". Keys are matched without regard to case, known acquisition keys
    first, then any other key whose name mentions a date or time."""
    if not metadata:
        return ""
    by_key = {}
    for key, value in dict(metadata).items():
        by_key.setdefault(str(key).upper(), value)
    for key in METADATA_KEYS:
        if key in by_key:
            iso = date_from_text(by_key[key])
            if iso:
                return iso
    for key in sorted(by_key):
        if "DATE" in key or "TIME" in key:
            iso = date_from_text(by_key[key])
            if iso:
                return iso
    return ""


def _gdal_metadata(path):
    """All metadata items GDAL reports for the raster, merged over the domains
    that carry acquisition times. Empty when GDAL cannot open it."""
    try:
        from osgeo import gdal
    except ImportError:      # pragma: no cover - GDAL ships with QGIS
        return {}
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.Open(str(path))
        return dataset_metadata(ds) if ds is not None else {}
    except Exception:
        return {}
    finally:
        gdal.PopErrorHandler()


def dataset_metadata(ds):
    """The metadata items of an opened GDAL dataset, merged over the
    domains that carry acquisition times and product details (a WorldView
    .IMD beside the image is read into IMD) and band 1's."""
    merged = {}
    for domain in _DOMAINS:
        try:
            items = ds.GetMetadata(domain) or {}
        except Exception:      # some drivers return XML lists
            continue
        if isinstance(items, dict):
            for key, value in items.items():
                merged.setdefault(key, value)
        else:      # xml:XMP and similar come back as a list of strings
            for i, value in enumerate(items):
                merged.setdefault("%s_%d" % (domain, i), value)
    # Per-band metadata: some products put the date on band 1 only.
    if ds.RasterCount:
        for key, value in (ds.GetRasterBand(1).GetMetadata() or {}).items():
            merged.setdefault(key, value)
    return merged


def raster_date(path):
    """Acquisition date of the raster at ``path``: from the file name first
    (analysts name their images by date), then from GDAL metadata, then from
    the name of the folder that holds it. "" when nothing gives a date."""
    if not path:
        return ""
    path = str(path)
    # A QGIS layer source may carry options after a pipe: "scene.tif|layerid=0".
    file_path = path.split("|", 1)[0]
    name = os.path.splitext(os.path.basename(file_path))[0]
    iso = date_from_text(name)
    if iso:
        return iso
    iso = date_from_metadata(_gdal_metadata(file_path))
    if iso:
        return iso
    return date_from_text(os.path.basename(os.path.dirname(os.path.abspath(file_path))))
