"""Draw a site's counts against its baseline on a matplotlib Figure.

No Qt and no QGIS: the dock shows this figure in a Qt canvas, Processing and
the command line save it as PNG/SVG with the Agg canvas. One drawing, so the
picture in the panel is the picture in the report.
"""
import datetime
import warnings

from . import baseline as bl

BAND_MODES = ("minmax", "std")   # baseline band: min-max, or mean +/- std

COLOURS = {
    "line": "#1f5fa8",
    "imported": "#6b6b6b",
    "band": "#9ecae1",
    "mean": "#08519c",
    "median": "#2b8c3e",
    "max": "#b2182b",
    "break": "#d7301f",
    "low": "#7b3294",
}


def _day(iso):
    return datetime.date.fromisoformat(iso)


def new_figure(width_in=4.2, height_in=3.0, dpi=100):
    """A Figure not tied to any GUI (for saving without a display)."""
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def draw(fig, res, band="minmax", title=""):
    """Draw ``res`` (baseline.Result) on ``fig``. Returns (axes, picks) where
    ``picks`` maps each artist drawn for picking to the list of dates of its
    points, so a GUI can tell which date was clicked."""
    import matplotlib.dates as mdates

    fig.clear()
    ax = fig.add_subplot(111)
    picks = {}
    rows = [r for r in res.rows if r.used]
    small = 8
    if not rows:
        ax.text(0.5, 0.5, "No counts yet.\nRun the count or import\nhistorical counts.",
                ha="center", va="center", fontsize=9, color="#555555",
                transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        return ax, picks
    s = res.stats
    dates = [_day(r.date) for r in rows]
    lo, hi = min(dates), max(dates)
    pad = datetime.timedelta(days=max(20, (hi - lo).days * 0.04))
    x0, x1 = lo - pad, hi + pad

    if s.n:
        if band == "std":
            b0, b1, band_label = s.mean - s.std, s.mean + s.std, "mean \u00b1 std"
        else:
            b0, b1, band_label = s.min, s.max, "min\u2013max"
        w0, w1 = _day(s.first) - pad / 2, _day(s.last) + pad / 2
        # Band over the window's dates, carried on lightly to the end so the
        # later dates are read against it.
        ax.fill_between([w0, w1], [b0, b0], [b1, b1], color=COLOURS["band"],
                        alpha=0.45, lw=0, label=band_label, zorder=1)
        ax.fill_between([w1, x1], [b0, b0], [b1, b1], color=COLOURS["band"],
                        alpha=0.18, lw=0, zorder=1)
        ax.axhline(s.mean, color=COLOURS["mean"], lw=1, ls="--",
                   label="mean %s" % bl._num(round(s.mean, 1)), zorder=2)
        ax.axhline(s.median, color=COLOURS["median"], lw=1, ls=":",
                   label="median %s" % bl._num(s.median), zorder=2)
        ax.axhline(s.max, color=COLOURS["max"], lw=0.8, ls="-", alpha=0.7,
                   label="max %s" % bl._num(s.max), zorder=2)

    ax.plot(dates, [r.count for r in rows], color=COLOURS["line"], lw=1.2, zorder=3)
    # imagery whose count carries a caveat (part of the area not imaged)
    # is drawn hollow: its count is a lower bound
    img = [r for r in rows if r.source == bl.IMAGERY and not r.note]
    part = [r for r in rows if r.source == bl.IMAGERY and r.note]
    imp = [r for r in rows if r.source != bl.IMAGERY]
    if img:
        art = ax.scatter([_day(r.date) for r in img], [r.count for r in img], s=22,
                         color=COLOURS["line"], zorder=4, label="imagery",
                         picker=True)
        art.set_pickradius(6)
        picks[art] = [r.date for r in img]
    if part:
        art = ax.scatter([_day(r.date) for r in part], [r.count for r in part], s=26,
                         facecolor="white", edgecolor=COLOURS["line"], linewidths=1.5,
                         zorder=4, label="part of area imaged", picker=True)
        art.set_pickradius(6)
        picks[art] = [r.date for r in part]
    if imp:
        art = ax.scatter([_day(r.date) for r in imp], [r.count for r in imp], s=26,
                         marker="s", facecolor="white", edgecolor=COLOURS["imported"],
                         linewidths=1.3, zorder=4, label="imported", picker=True)
        art.set_pickradius(6)
        picks[art] = [r.date for r in imp]
    brk = [r for r in rows if r.breaks]
    if brk:
        ax.scatter([_day(r.date) for r in brk], [r.count for r in brk], s=110,
                   facecolor="none",
                   edgecolor=[COLOURS["low"] if r.status == "low" else COLOURS["break"]
                              for r in brk],
                   linewidths=2, zorder=5, label="breaks baseline")
        for r in brk:
            ax.annotate("%d" % r.count, (_day(r.date), r.count), xytext=(-6, 6),
                        textcoords="offset points", ha="right", fontsize=small,
                        fontweight="bold", color=COLOURS["break"], zorder=6)

    ax.set_xlim(x0, x1)
    top = max([r.count for r in rows] + ([s.max] if s.n else []))
    ax.set_ylim(0, top * 1.12 + 1)
    ax.set_ylabel("railcars", fontsize=small)
    ax.tick_params(labelsize=small)
    span_years = (hi - lo).days / 365.25
    if span_years >= 2:
        ax.xaxis.set_major_locator(mdates.YearLocator(base=max(1, int(span_years // 6) + 1)))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    else:
        loc = mdates.AutoDateLocator(maxticks=6)
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.grid(True, axis="y", color="#dddddd", lw=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    # Legend above the plot: never over the points, whatever the counts; in
    # as many columns as the figure's width holds (a narrow dock: two).
    # The legend starts where the axes do, which the layout without it tells.
    renderer = fig.canvas.get_renderer()
    with warnings.catch_warnings():     # a figure too small to lay out
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout(pad=0.6)
    room = fig.bbox.x1 - ax.get_position().x0 * fig.bbox.width
    for ncol in (7, 4, 3, 2, 1):
        legend = ax.legend(fontsize=small - 1, loc="lower left", bbox_to_anchor=(0.0, 1.01),
                           frameon=False, ncol=ncol, handlelength=1.5, columnspacing=0.8,
                           borderaxespad=0.0, handletextpad=0.4)
        if legend.get_window_extent(renderer).width <= room:
            break
    if title:
        fig.suptitle(title, fontsize=small + 1)
    fig.tight_layout(pad=0.6)
    return ax, picks


def save(res, path, band="minmax", title="", width_in=6.4, height_in=3.6, dpi=150):
    """Save the chart of ``res`` to ``path`` (.png or .svg, from the suffix)."""
    fig = new_figure(width_in, height_in, dpi)
    draw(fig, res, band, title)
    fig.savefig(path, dpi=dpi)
    return path
