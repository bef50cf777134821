"""Robustness benchmark: how counts hold when the imagery differs from the
generator's in ways real products do.

    PYTHONPATH=.build /usr/bin/python3 tests/benchmarks/bench_robustness.py \
        [--out DIR] [--only SUBSTRING] [--suite holdout|tuning]

Each held-out scene (bench_accuracy.py's, never trained or tuned on) is
counted as generated and after each change below, applied to its pixels
(georeferencing kept). None of the changes is in the training scenes'
recipe (their JPEG quality goes down to 40, not 30), so this is a proxy
for how the detector meets imagery it has not seen: tone curves of other
sensors and processing chains, flat low-contrast scenes, over-sharpened
pansharpened products, imagery softer than its pixel size, heavier noise,
heavier compression. It prints F1 and count error per change and GSD band.
"""
import argparse
import os
import sys
import tempfile

import numpy as np
from osgeo import gdal

from railcar_counter.plugin.core import evaluation, imaging, synthetic
from railcar_counter.plugin.core.detector import CountOptions, count_railcars

gdal.UseExceptions()


def _softer(a, factor=1.6):
    """Detail of a sensor ``factor`` times coarser than the pixel grid:
    area-averaged down, bilinear back up."""
    h, w = a.shape
    small = gdal.GetDriverByName("MEM").Create("", w, h, 1, gdal.GDT_Float32)
    small.GetRasterBand(1).WriteArray(a)
    sw, sh = max(1, int(w / factor)), max(1, int(h / factor))
    low = small.GetRasterBand(1).ReadAsArray(0, 0, w, h, sw, sh,
                                             resample_alg=gdal.GRIORA_Average)
    mem = gdal.GetDriverByName("MEM").Create("", sw, sh, 1, gdal.GDT_Float32)
    mem.GetRasterBand(1).WriteArray(low)
    return mem.GetRasterBand(1).ReadAsArray(0, 0, sw, sh, w, h,
                                            resample_alg=gdal.GRIORA_Bilinear)


def _jpeg(a, quality):
    """An 8-bit JPEG of the band at ``quality`` and back (8 x 8 blocks)."""
    byte = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    return synthetic._jpeg_roundtrip(byte[None], quality)[0] / 255.0


# name -> (what it stands for, f(band as 0..1 floats, rng) -> 0..1 floats)
CHANGES = {
    "as generated": ("", lambda a, rng: a),
    "gamma 0.6": ("brighter mid-tones (another tone curve)", lambda a, rng: a ** 0.6),
    "gamma 1.6": ("darker mid-tones", lambda a, rng: a ** 1.6),
    "uneven light": ("a brightness ramp (mosaic, vignetting)",
                     lambda a, rng: a * np.linspace(0.55, 1.0, a.shape[1])[None, :]),
    "sharpened": ("over-sharpened pansharpened product",
                  lambda a, rng: a + 1.2 * (a - imaging.gauss_blur(a, 1.2))),
    "softer x1.6": ("optics softer than the pixel size", lambda a, rng: _softer(a, 1.6)),
    "noise 4 %": ("noisier sensor", lambda a, rng: a + rng.normal(0, 0.04, a.shape)),
    "JPEG 30": ("8-bit export, heavily compressed", lambda a, rng: _jpeg(a, 30)),
}


def perturbed_copy(path, out_path, change, seed=0):
    """Write ``path`` with ``change`` applied to every band's valid pixels."""
    src = gdal.Open(path)
    drv = gdal.GetDriverByName("GTiff")
    dst = drv.CreateCopy(out_path, src, options=["TILED=YES"])
    rng = np.random.default_rng(seed)
    for b in range(1, src.RasterCount + 1):
        band = src.GetRasterBand(b)
        if band.GetColorInterpretation() == gdal.GCI_AlphaBand:
            continue
        a = band.ReadAsArray().astype(np.float64)
        nd = band.GetNoDataValue()
        valid = np.isfinite(a) if nd is None else (a != nd) & np.isfinite(a)
        top = max(1e-9, float(a[valid].max())) if valid.any() else 1.0
        out = np.clip(change(np.clip(a / top, 0, 1), rng), 0, 1) * top
        out = np.where(valid, out, a)
        if band.DataType in (gdal.GDT_Byte, gdal.GDT_UInt16):
            out = np.rint(out)
            if nd is not None:           # a changed pixel must not become nodata
                out = np.where(valid & (out == nd), nd + 1, out)
        dst.GetRasterBand(b).WriteArray(out)
    dst = None
    return out_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "railcar_counter_bench"))
    ap.add_argument("--only", default=None, help="run scenes whose name contains this")
    ap.add_argument("--suite", choices=("holdout", "tuning"), default="holdout",
                    help="tuning: the scenes choices are made on (the report is on holdout)")
    a = ap.parse_args(argv)
    suite = synthetic.holdout_suite() if a.suite == "holdout" else synthetic.tuning_suite()
    specs = [s for s in suite if not a.only or a.only in s.name]
    work = tempfile.mkdtemp(prefix="railcar_robustness_")
    results = {name: {"fine": [], "coarse": []} for name in CHANGES}
    for spec in specs:
        path, truth = synthetic.cached_scene(spec, a.out, workers=os.cpu_count() or 1)
        info = synthetic.load_scene_info(path)
        band = "fine" if spec.gsd_m <= 0.5 + 1e-9 else "coarse"
        row = []
        for k, (name, (_why, change)) in enumerate(CHANGES.items()):
            copy = path if k == 0 else perturbed_copy(
                path, os.path.join(work, "%s_%d.tif" % (spec.name, k)), change, seed=k)
            dets = count_railcars(copy, CountOptions(source=spec.name)).detections
            m = evaluation.match(dets, truth, lookalikes=info["lookalikes"],
                                 track_corridors=info["track_corridors"])
            results[name][band].append(m)
            has_cars = m.true_freight + m.true_locomotives > 0
            row.append("%s %s" % (name, "%.3f" % m.f1 if has_cars else "%d cars" % len(dets)))
            if copy != path:
                os.remove(copy)
        print("%-28s %s" % (spec.name[:28], " | ".join(row)), flush=True)
    print()
    print("| %-14s | %-40s | %-9s | %8s | %9s | %-9s | %8s | %9s |"
          % ("change", "stands for", "F1 <=0.5", "agg err", "worst err", "F1 0.7-1", "agg err",
             "worst err"))
    print("|" + "|".join("-" * n for n in (16, 42, 11, 10, 11, 11, 10, 11)) + "|")
    for name, (why, _change) in CHANGES.items():
        cells = []
        for band in ("fine", "coarse"):
            ms = results[name][band]
            if not ms:
                cells += ["-", "-", "-"]
                continue
            tot = evaluation.summarize(ms)
            errs = [abs(m.count_error) for m in ms if m.true_freight and m.count_error is not None]
            cells += ["%.3f" % tot.f1,
                      "%+.1f%%" % (100 * tot.count_error) if tot.count_error is not None else "-",
                      "%.1f%%" % (100 * max(errs)) if errs else "-"]
        print("| %-14s | %-40s | %-9s | %8s | %9s | %-9s | %8s | %9s |" % ((name, why) + tuple(cells)))
    os.rmdir(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
