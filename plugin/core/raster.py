"""Reading rasters for the detector: pixel size in metres, band layout,
radiometric normalisation and windowed reads. GDAL and numpy only."""
import math
import os

import numpy as np
from osgeo import gdal, osr

from .dates import dataset_metadata
from .errors import InputError
from .imaging import box_along_x, box_along_y

gdal.UseExceptions()

STRETCH_STRIPS = 16       # bands of rows sampled for the brightness stretch
# Median brightness (after the stretch) of the generated scenes the network
# was trained on: 0.21-0.46, snow 0.71. Images whose median lies outside
# get a gamma that brings it to the nearest end: dark tone curves of other
# products, or linear 11-bit products that the 1-99 % stretch leaves dark
# (darker mid-tones cost up to 16 % of a scene's cars before; brighter
# ones cost nothing, so only very bright images are darkened).
TONE_MEDIAN_RANGE = (0.25, 0.75)
GAMMA_RANGE = (0.5, 2.0)
# Integer images that declare no nodata often still have a black collar
# (rotated strips, exports, screen grabs): pixels 0 in every band. They are
# left out of the brightness stretch (a 17 % collar cost 4-5 % of a scene's
# cars through the stretch alone), and black areas this wide or wider are
# read as no data. Narrower ones, such as a dark car clipped to black, stay
# image.
FILL_WIDTH_M = 4.5


# Metadata keys (the last part of a dotted name, any case) that hold the
# sun's azimuth: WorldView .IMD, Pleiades/SPOT DIMAP, and plain tags.
SUN_AZIMUTH_KEYS = ("MEANSUNAZ", "SUN_AZIMUTH", "SUNAZIMUTH", "SUN_AZ", "SUNAZ")


def _metres_per_degree(lat_deg):
    """Length of one degree of latitude and of longitude (WGS84) at ``lat``."""
    p = math.radians(lat_deg)
    m_lat = 111132.92 - 559.82 * math.cos(2 * p) + 1.175 * math.cos(4 * p)
    m_lon = 111412.84 * math.cos(p) - 93.5 * math.cos(3 * p)
    return m_lat, m_lon


def raster_source_exists(path):
    """Whether ``path`` is an existing file, a /vsi path, or a GDAL
    connection string (GPKG:site.gpkg:table, NETCDF:...) whose file exists."""
    if not path:
        return False
    if os.path.exists(path) or path.startswith("/vsi"):
        return True
    parts = path.split(":")
    return any(os.path.exists(":".join(parts[i:j]))      # C:\\x.gpkg keeps its colon
               for i in range(1, len(parts)) for j in range(i + 1, len(parts) + 1))


def tone_gamma(median):
    """The gamma that moves a stretched image's median brightness into
    TONE_MEDIAN_RANGE (1.0 when it is inside)."""
    m = min(max(median, 0.02), 0.98)
    lo, hi = TONE_MEDIAN_RANGE
    if lo <= m <= hi:
        return 1.0
    gamma = math.log(lo if m < lo else hi) / math.log(m)
    return float(min(max(gamma, GAMMA_RANGE[0]), GAMMA_RANGE[1]))


class RasterSource:
    """An opened raster with what the detector needs to know about it."""

    def __init__(self, path, crs_wkt="", pixel_size_m=0.0):
        """``crs_wkt``, when given, is the CRS to use instead of the file's
        (in QGIS the layer's, which the analyst may have set for a file with
        none; on the command line --crs). ``pixel_size_m`` > 0 is the
        ground size of a pixel as the analyst knows it: it replaces the one
        worked out from the georeferencing, and lets a photo or screen grab
        with none be counted (in QGIS's pixel frame, x = column, y = -row)."""
        self.path = path
        self.pixel_size_m = float(pixel_size_m or 0.0)
        if not raster_source_exists(path):
            raise InputError("Raster file not found: %s. Choose an existing GeoTIFF or "
                             "other raster file." % path)
        try:
            self.ds = gdal.Open(path, gdal.GA_ReadOnly)
        except RuntimeError as err:
            raise InputError("GDAL cannot read %s (%s). Export the layer to GeoTIFF and "
                             "try again." % (os.path.basename(path), err)) from None
        if self.ds is None:
            raise InputError("GDAL cannot read %s. Export the layer to GeoTIFF and try "
                             "again." % os.path.basename(path))
        self.read_path = self._expand_palette()
        ds = self.ds
        self.width, self.height = ds.RasterXSize, ds.RasterYSize
        if self.width < 8 or self.height < 8:
            raise InputError("%s is only %d x %d pixels: too small to hold a railcar."
                             % (os.path.basename(path), self.width, self.height))
        self.gt = ds.GetGeoTransform(can_return_null=True)
        if self.gt is not None and tuple(self.gt) == (0, 1, 0, 0, 0, 1):
            self.gt = None       # pixel coordinates: a photo, not a map
        self.crs_wkt = crs_wkt or ds.GetProjection() or ""
        name = os.path.basename(path)
        if self.gt is None and (ds.GetGCPCount() or ds.GetMetadata("RPC")):
            raise InputError("%s is located by ground control points or RPCs, not by a "
                             "geotransform. Warp or orthorectify it to a map first (Raster > "
                             "Projections > Warp, or gdalwarp), then count the result." % name)
        # a photo or screen grab: where it lies on the earth, and where
        # north is on it, are unknown (ground_frame)
        self.placed = self.gt is not None
        if self.pixel_size_m > 0:
            if self.gt is None:
                self.gt = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)    # where QGIS draws such an image
            self.srs = self._parse_crs() if self.crs_wkt else osr.SpatialReference()
            sx, sy = math.hypot(self.gt[1], self.gt[4]), math.hypot(self.gt[2], self.gt[5])
            self.gsd_x_m, self.gsd_y_m = self.pixel_size_m, self.pixel_size_m * sy / sx
        else:
            if self.gt is None:
                raise InputError(
                    "%s has no georeferencing (no geotransform or world file), so its pixel "
                    "size in metres is unknown. Georeference the image (Raster > "
                    "Georeferencer), or give its pixel size (Pixel size in the Processing "
                    "tool; on the command line --pixel-size 0.5, make count ... "
                    "PIXEL_SIZE=0.5)." % name)
            if not self.crs_wkt:
                raise InputError(
                    "%s has a geotransform but no CRS, so its pixel size in metres is "
                    "unknown. Set the layer's CRS (Layer Properties > Source), or give the "
                    "pixel size (Pixel size in the Processing tool; on the command line "
                    "--crs EPSG:32652 or --pixel-size 0.5)." % name)
            self.srs = self._parse_crs()
            self._check_crs_fits()
            self.gsd_x_m, self.gsd_y_m = self._pixel_size_m()
        self._choose_bands()
        self._stats = None

    def _expand_palette(self):
        """What windows are read from (a path). A paletted image (8-bit PNG, GIF,
        some exports) holds colour indices, not brightness: it is read
        through an in-memory VRT that turns indices into red, green, blue."""
        band = self.ds.GetRasterBand(1)
        if (self.ds.RasterCount != 1 or band.GetColorInterpretation() != gdal.GCI_PaletteIndex
                or band.GetColorTable() is None):
            return self.path
        # GDAL opens a VRT from its XML text: no file to write or clean up
        vrt = gdal.Translate("", self.ds, format="VRT", rgbExpand="rgb")
        xml = vrt.GetMetadata("xml:VRT")[0]
        self.ds = gdal.Open(xml, gdal.GA_ReadOnly)
        return xml

    # --- geometry -------------------------------------------------------------
    def pixel_to_map(self, col, row):
        g = self.gt
        return g[0] + col * g[1] + row * g[2], g[3] + col * g[4] + row * g[5]

    def map_to_pixel(self, x, y):
        g = self.gt
        det = g[1] * g[5] - g[2] * g[4]
        dx, dy = x - g[0], y - g[3]
        return (g[5] * dx - g[2] * dy) / det, (-g[4] * dx + g[1] * dy) / det

    def _parse_crs(self):
        """The CRS as an osr object, x = easting / longitude."""
        srs = osr.SpatialReference()
        try:
            unreadable = srs.ImportFromWkt(self.crs_wkt) != 0
        except RuntimeError:
            unreadable = True
        if unreadable:
            raise InputError("The CRS of %s cannot be read. Set the layer's CRS (Layer "
                             "Properties > Source) and try again."
                             % os.path.basename(self.path))
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        return srs

    def _check_crs_fits(self):
        """Degrees must lie within -180..360 / -90..90: a CRS given to a
        layer by mistake (WGS 84 on UTM coordinates) would otherwise turn
        metres into degrees and every car into a giant."""
        if not self.srs.IsGeographic():
            return
        corners = [self.pixel_to_map(c, r) for c in (0, self.width) for r in (0, self.height)]
        lon, lat = zip(*corners)
        if min(lon) < -180 or max(lon) > 360 or min(lat) < -90.5 or max(lat) > 90.5:
            raise InputError("%s has coordinates like (%.0f, %.0f), which are not degrees, "
                             "but its CRS (%s) is geographic. Set the layer's CRS to the one "
                             "its coordinates are in (for example a UTM zone) and try again."
                             % (os.path.basename(self.path), corners[0][0], corners[0][1],
                                self.srs.GetName() or "geographic"))

    def _pixel_size_m(self):
        """Ground size of one pixel along columns and rows, in metres, measured
        at the raster's centre so that Web Mercator, feet and degrees all work."""
        srs = self.srs
        c, r = self.width / 2.0, self.height / 2.0
        pts = [self.pixel_to_map(c, r), self.pixel_to_map(c + 1, r), self.pixel_to_map(c, r + 1)]
        try:
            geo = srs.CloneGeogCS()
            geo.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            tr = osr.CoordinateTransformation(srs, geo)
            ll = [tr.TransformPoint(x, y)[:2] for x, y in pts]
            m_lat, m_lon = _metres_per_degree(ll[0][1])

            def dist(a, b):
                return math.hypot((b[0] - a[0]) * m_lon, (b[1] - a[1]) * m_lat)
            sx, sy = dist(ll[0], ll[1]), dist(ll[0], ll[2])
        except (RuntimeError, TypeError, ValueError):
            unit = srs.GetLinearUnits() or 1.0
            sx = math.hypot(self.gt[1], self.gt[4]) * unit
            sy = math.hypot(self.gt[2], self.gt[5]) * unit
        if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
            raise InputError("Cannot work out the pixel size of %s in metres from its CRS. "
                             "Reproject it to a projected CRS (for example UTM) and try "
                             "again." % os.path.basename(self.path))
        return sx, sy

    def ground_frame(self):
        """The latitude of the raster's centre and the unit vectors that
        point east and north in its pixel frame (x along columns, y along
        rows, each in metres): (lat, east, north). None where the raster
        has no CRS that places it on the earth."""
        if (not self.placed or not self.crs_wkt
                or not (self.srs.IsProjected() or self.srs.IsGeographic())):
            return None
        c, r = self.width / 2.0, self.height / 2.0
        try:
            geo = self.srs.CloneGeogCS()
            geo.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            to_geo = osr.CoordinateTransformation(self.srs, geo)
            to_map = osr.CoordinateTransformation(geo, self.srs)
            lon, lat = to_geo.TransformPoint(*self.pixel_to_map(c, r))[:2]
            step = 1e-4           # degrees: about 10 m
            axes = []
            for dlon, dlat in ((step, 0.0), (0.0, step)):
                col, row = self.map_to_pixel(*to_map.TransformPoint(lon + dlon, lat + dlat)[:2])
                dx, dy = (col - c) * self.gsd_x_m, (row - r) * self.gsd_y_m
                norm = math.hypot(dx, dy)
                if not (norm > 0 and math.isfinite(norm)):
                    return None
                axes.append((dx / norm, dy / norm))
        except (RuntimeError, TypeError, ValueError):
            return None
        if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
            return None
        return lat, axes[0], axes[1]

    def sun_azimuth(self):
        """The sun's azimuth (degrees clockwise from north) that the
        product's metadata gives (GDAL reads WorldView .IMD and Pleiades
        DIMAP files beside the image into its IMD domain), the mean where
        it gives several; None where it gives none."""
        values = []
        for key, value in dataset_metadata(self.ds).items():
            if str(key).split(".")[-1].upper() in SUN_AZIMUTH_KEYS:
                try:
                    az = float(str(value).strip().strip('"'))
                except ValueError:
                    continue
                if 0.0 <= az <= 360.0:
                    values.append(math.radians(az))
        if not values:
            return None
        mean = math.atan2(sum(map(math.sin, values)), sum(map(math.cos, values)))
        return math.degrees(mean) % 360.0

    @property
    def gsd_m(self):
        return math.sqrt(self.gsd_x_m * self.gsd_y_m)

    # --- bands ----------------------------------------------------------------
    def _choose_bands(self):
        """Pick the bands whose mean is the image's brightness. Alpha and
        near-infrared are left out; 4-band products without colour
        interpretation are taken as B,G,R,NIR (the usual satellite order)."""
        ds = self.ds
        n = ds.RasterCount
        if n == 0:
            raise InputError("%s has no raster bands." % os.path.basename(self.path))
        interps = [ds.GetRasterBand(i + 1).GetColorInterpretation() for i in range(n)]
        self.alpha_band = next((i + 1 for i, c in enumerate(interps)
                                if c == gdal.GCI_AlphaBand), None)
        rgb = [i + 1 for i, c in enumerate(interps)
               if c in (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)]
        others = [i + 1 for i in range(n) if i + 1 != self.alpha_band]
        # GeoTIFFs without photometric tags call band 1 'gray' and the rest
        # 'undefined': take three or more such bands as B,G,R(,NIR) or R,G,B,
        # and eight as WorldView-2/3's coastal, B, G, yellow, R, red edge, NIR1, NIR2
        if len(others) == 8:
            others = [others[1], others[2], others[4]]
        visible = rgb if rgb else (others[:3] if len(others) >= 3 else others[:1])
        self.bands = visible or [1]
        b = ds.GetRasterBand(self.bands[0])
        self.nodata = [ds.GetRasterBand(i).GetNoDataValue() for i in self.bands]
        self._per_dataset_mask = any(ds.GetRasterBand(i).GetMaskFlags() == gdal.GMF_PER_DATASET
                                     for i in self.bands)
        self.dtype = gdal.GetDataTypeName(b.DataType)
        # black (0 in every band) is a collar, not image, unless the file
        # says which value is no data: see FILL_WIDTH_M
        self.black_is_fill = all(v is None for v in self.nodata) and b.DataType in (
            gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32)
        if gdal.GetDataTypeName(b.DataType).startswith("C"):
            raise InputError("%s holds complex (radar) values; the counter needs optical "
                             "imagery." % os.path.basename(self.path))

    # --- reading --------------------------------------------------------------
    def read(self, xoff, yoff, xsize, ysize, buf_w, buf_h):
        """Brightness (float32, about 0..1) and a validity mask for a window,
        resampled (area average down, bilinear up) to buf_w x buf_h.

        Reads through a GDAL handle of its own, closed afterwards: safe from
        worker threads, and GDAL frees the window's cached blocks, so memory
        does not grow with the raster."""
        ds = gdal.Open(self.read_path, gdal.GA_ReadOnly)
        try:
            return self._read(ds, xoff, yoff, xsize, ysize, buf_w, buf_h)
        finally:
            ds = None

    def _read(self, ds, xoff, yoff, xsize, ysize, buf_w, buf_h):
        stack = []
        valid = np.ones((buf_h, buf_w), bool)
        alg = gdal.GRIORA_Average if (buf_w < xsize or buf_h < ysize) else gdal.GRIORA_Bilinear
        lo, scale, gamma = self.stretch()
        for k, bi in enumerate(self.bands):
            band = ds.GetRasterBand(bi)
            a = band.ReadAsArray(xoff, yoff, xsize, ysize, buf_xsize=buf_w, buf_ysize=buf_h,
                                 resample_alg=alg)
            nd = self.nodata[k]
            if nd is not None:
                valid &= a != nd
            if a.dtype.kind == "f":
                valid &= np.isfinite(a)
            stack.append(a)
        valid &= self._unmasked(ds, xoff, yoff, xsize, ysize, buf_w, buf_h)
        if self.black_is_fill:
            valid &= ~self._black_collar(stack, self.gsd_x_m * xsize / buf_w)
        if len(stack) == 1:
            gray = stack[0].astype(np.float32)
        else:
            gray = stack[0].astype(np.float32)
            for a in stack[1:]:
                gray += a
            gray *= 1.0 / len(stack)
        gray -= lo
        gray *= scale
        if gamma != 1.0:
            np.power(gray, gamma, out=gray, where=gray > 0)
        if not valid.all():
            gray[~valid] = np.nan
        return gray, valid

    def _unmasked(self, ds, xoff, yoff, xsize, ysize, buf_w, buf_h):
        """Where neither the alpha band nor an internal mask band hides the
        image (True when the file has neither)."""
        bands = [ds.GetRasterBand(self.alpha_band)] if self.alpha_band is not None else []
        if self._per_dataset_mask:
            bands.append(ds.GetRasterBand(self.bands[0]).GetMaskBand())
        shown = True
        for band in bands:
            shown = shown & (band.ReadAsArray(xoff, yoff, xsize, ysize, buf_xsize=buf_w,
                                              buf_ysize=buf_h) > 0)
        return shown

    @staticmethod
    def _black_collar(stack, pixel_m):
        """Where the bands are all 0 over areas FILL_WIDTH_M wide or wider
        (a morphological opening of the black pixels)."""
        black = stack[0] == 0
        for a in stack[1:]:
            black &= a == 0
        if not black.any():
            return black
        n = max(3, int(round(FILL_WIDTH_M / pixel_m))) | 1
        f = black.astype(np.float32)
        core = box_along_y(box_along_x(f, n), n) >= 1.0 - 1e-6
        return box_along_y(box_along_x(core.astype(np.float32), n), n) > 1e-6

    def stretch(self):
        """Offset and scale that map the 1st..99th brightness percentile of the
        whole raster to 0..1, so 8-bit, 11/12-bit and float products all look
        the same to the detector, and the gamma applied after them
        (tone_gamma). Computed once from STRETCH_STRIPS bands of
        rows spread over the raster, each decimated, read through a handle of
        its own whose cached blocks are dropped after every band: a fraction
        of a full read, and memory that does not grow with the raster."""
        if self._stats is None:
            ds = gdal.Open(self.read_path, gdal.GA_ReadOnly)
            block_h = ds.GetRasterBand(self.bands[0]).GetBlockSize()[1]
            rows = max(1, min(self.height, block_h if block_h > 1 else 64))
            strips = max(1, min(STRETCH_STRIPS, self.height // rows))
            bw = max(1, min(self.width, 1024))
            bh = max(1, min(rows, 1024 // strips))
            parts = []
            for i in range(strips):
                y = int((i + 0.5) * self.height / strips) // rows * rows
                y = min(y, self.height - rows)
                sums = black = None
                valid = np.ones((bh, bw), bool)
                for k, bi in enumerate(self.bands):
                    a = ds.GetRasterBand(bi).ReadAsArray(0, y, self.width, rows,
                                                         buf_xsize=bw, buf_ysize=bh)
                    a = a.astype(np.float64)
                    nd = self.nodata[k]
                    if nd is not None:
                        valid &= a != nd
                    valid &= np.isfinite(a)
                    black = (a == 0) if black is None else (black & (a == 0))
                    sums = a if sums is None else sums + a
                valid &= self._unmasked(ds, 0, y, self.width, rows, bw, bh)
                ds.FlushCache()
                if self.black_is_fill:
                    valid &= ~black
                parts.append((sums / len(self.bands))[valid])
            ds = None
            vals = np.concatenate(parts)
            if vals.size < 16:
                raise InputError("%s holds no valid pixels (all nodata)." %
                                 os.path.basename(self.path))
            lo, hi = np.percentile(vals, [1.0, 99.0])
            if not hi > lo:
                hi = lo + 1.0
            median = (float(np.median(vals)) - lo) / (hi - lo)
            self._stats = (np.float32(lo), np.float32(1.0 / (hi - lo)), tone_gamma(median))
        return self._stats

    def close(self):
        self.ds = None
