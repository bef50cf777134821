"""Speed benchmark: time to count railcars / time GDAL takes to read the raster.

    PYTHONPATH=.build /usr/bin/python3 tests/benchmarks/bench_speed.py \
        [--out DIR] [--sizes 2000,4000,8000] [--repeat 3]

Generates 3-band uint8 0.5 m scenes of 2000, 4000 and 8000 px a side (cached
in --out), then, in ONE run and each in a fresh child process: GDAL reading
every pixel (strip by strip, one block row at a time, all bands) and
count_railcars on the same file. Each measurement is repeated (--repeat,
median reported); peak memory is the child's peak resident set (VmHWM). The runs alternate
read, count, read, count... right after the files were generated or read, so
all timings are with a warm OS page cache (a cold-cache read would make the
read slower and the ratio smaller).
Goal (issue 2): count <= 3x read on 8000 x 8000, peak memory < 400 MB and flat
as the raster grows.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _child(kind, path):
    """Runs in a child process: one measurement, printed as JSON."""
    from osgeo import gdal
    t0 = time.perf_counter()
    extra = {}
    if kind == "read":
        ds = gdal.Open(path)
        w, h = ds.RasterXSize, ds.RasterYSize
        bh = ds.GetRasterBand(1).GetBlockSize()[1]
        total = 0
        for y in range(0, h, bh):
            a = ds.ReadAsArray(0, y, w, min(bh, h - y))
            total += int(a.shape[-1] * a.shape[-2])
        ds = None
        extra["pixels"] = total
    else:
        from railcar_counter.plugin.core.detector import CountOptions, count_railcars
        res = count_railcars(path, CountOptions())
        extra["count"] = res.count
        extra["detections"] = len(res.detections)
    secs = time.perf_counter() - t0
    print(json.dumps(dict(kind=kind, secs=secs, rss_mb=_peak_mb(), **extra)))


def _peak_mb():
    """Peak resident memory of this process. VmHWM restarts at exec, unlike
    ru_maxrss, which Linux carries over from the forking parent."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(kind, path, gdal_cache=None):
    env = dict(os.environ)
    if gdal_cache:
        env["GDAL_CACHEMAX"] = str(gdal_cache)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", kind, path],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError("%s child failed:\n%s" % (kind, out.stderr[-3000:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "railcar_counter_bench"))
    ap.add_argument("--sizes", default="2000,4000,8000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compress", default=None,
                    help="GeoTIFF compression of the test scenes (default none: the fastest read, "
                         "the strictest ratio); e.g. DEFLATE, LZW, JPEG")
    ap.add_argument("--gdal-cache", type=int, default=None, metavar="MB",
                    help="GDAL_CACHEMAX for both children (default: GDAL's, 5%% of RAM; its block "
                         "cache alone makes a full read grow with the raster)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        _child(*a.child)
        return 0
    from railcar_counter.plugin.core import synthetic
    sizes = [int(s) for s in a.sizes.split(",") if s]
    paths, ntrue = {}, {}
    for n in sizes:
        t0 = time.time()
        spec = synthetic.speed_spec(n, compress=a.compress)
        path, truth = synthetic.cached_scene(spec, a.out, workers=os.cpu_count() or 1)
        paths[n] = path
        ntrue[n] = sum(1 for t in truth if t.is_freight())
        print("scene %5d px: %s (%d true cars, %.0f MB, ready in %.1f s)"
              % (n, path, len(truth), os.path.getsize(path) / 1e6, time.time() - t0), flush=True)
    rows = []
    for n in sizes:
        reads, counts = [], []
        for _ in range(a.repeat):
            reads.append(_measure("read", paths[n], a.gdal_cache))
            counts.append(_measure("count", paths[n], a.gdal_cache))
        rt = statistics.median(r["secs"] for r in reads)
        ct = statistics.median(c["secs"] for c in counts)
        rows.append(dict(size=n, read=rt, true=ntrue[n], count=ct, ratio=ct / rt if rt else float("inf"),
                         read_mb=max(r["rss_mb"] for r in reads), count_mb=max(c["rss_mb"] for c in counts),
                         cars=counts[-1]["count"], all_read=[r["secs"] for r in reads],
                         all_count=[c["secs"] for c in counts]))
        print("  %d px: read %s s, count %s s" % (n, ", ".join("%.2f" % r["secs"] for r in reads),
                                                   ", ".join("%.2f" % c["secs"] for c in counts)), flush=True)
    print()
    print("| %-11s | %8s | %8s | %8s | %12s | %13s | %10s | %10s |"
          % ("raster", "read s", "count s", "ratio", "read peak MB", "count peak MB", "true cars",
             "counted"))
    print("|-------------|----------|----------|----------|--------------|---------------|------------|"
          "------------|")
    for r in rows:
        print("| %-11s | %8.2f | %8.2f | %7.1fx | %12.0f | %13.0f | %10d | %10d |"
              % ("%dx%d" % (r["size"], r["size"]), r["read"], r["count"], r["ratio"], r["read_mb"],
                 r["count_mb"], r["true"], r["cars"]))
    print()
    print("Median of %d runs each, alternating read/count in fresh child processes; warm page cache "
          "(files just written). Peak memory = peak resident set (VmHWM) of each child, Python + "
          "GDAL + numpy included. GeoTIFF compression: %s. GDAL_CACHEMAX: %s."
          % (a.repeat, a.compress or "none", ("%d MB" % a.gdal_cache) if a.gdal_cache
             else os.environ.get("GDAL_CACHEMAX", "GDAL default (5% of RAM)")))
    big = max(rows, key=lambda r: r["size"])
    small = min(rows, key=lambda r: r["size"])
    ok_ratio = big["ratio"] <= 3.0
    ok_mem = big["count_mb"] < 400
    flat = big["count_mb"] <= small["count_mb"] * 1.5 + 50
    print("Goal count <= 3x read on %d px: %s (%.2fx)"
          % (big["size"], "PASS" if ok_ratio else "FAIL", big["ratio"]))
    print("Goal peak memory < 400 MB: %s (%.0f MB)" % ("PASS" if ok_mem else "FAIL", big["count_mb"]))
    print("Memory flat as the raster grows (%d px -> %d px: %.0f -> %.0f MB): %s"
          % (small["size"], big["size"], small["count_mb"], big["count_mb"], "PASS" if flat else "FAIL"))
    return 0 if (ok_ratio and ok_mem and flat) else 1


if __name__ == "__main__":
    sys.exit(main())
