"""Baseline statistics for a site's counts over time. Pure Python, no Qt/QGIS.

Definitions (the dock, Processing, the CSV and the chart all use these):

* A *point* is one date's count: from imagery counted in the project, or
  imported from an earlier analyst's CSV. Several imagery layers of the same
  date are summed (tiles of one site); an imported count on a date that also
  has imagery is kept in the table but left out of the statistics (the
  imagery wins).
* The *baseline window* selects the dates that describe "normal":
  ``before_latest`` (default): every date before the latest date;
  ``last_years``: the N years before an end date (default the latest date),
  end date excluded; ``range``: from a start to an end date, both included,
  either may be empty (open).
* Baseline statistics: n, mean, median, min, max, std (sample, 0 when n < 2)
  and MAD (median absolute deviation from the median).
* Robust anomaly score of a count: the modified z-score of Iglewicz and
  Hoaglin, ``(count - median) / (1.4826 * MAD)``. When the MAD is 0 or tiny
  (a quiet yard with the same count every time) the scale is floored at
  ``max(1, 10 % of the median)`` so that one extra car is not infinitely
  anomalous.
* A date *breaks the baseline* when it is outside the window and either
  ``count > baseline max and score >= 3.5`` ("unprecedented") or
  ``count < baseline min and score <= -3.5`` ("low").
  Outside the window and not breaking it: "high" when ``count > max`` or
  ``score >= 2``, else "normal". Dates in the window have status "baseline".
"""
from dataclasses import dataclass, field
from decimal import Decimal, ROUND_HALF_UP
from fractions import Fraction
import csv
import datetime
import io
import math
import statistics

from .errors import InputError

BREAK_SCORE = 3.5      # Iglewicz & Hoaglin's usual cut-off for outliers
HIGH_SCORE = 2.0
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this = sigma

IMAGERY = "imagery"
IMPORTED = "imported"

WINDOW_MODES = ("before_latest", "last_years", "range")


@dataclass
class Point:
    date: str                 # ISO YYYY-MM-DD
    count: int
    source: str = IMAGERY     # IMAGERY or IMPORTED
    note: str = ""            # imported: the CSV's note; imagery: a caveat on the count
    label: str = ""           # layer name(s) for imagery


@dataclass
class Window:
    mode: str = "before_latest"
    years: int = 5            # for last_years
    end: str = ""             # for last_years (default latest) and range
    start: str = ""           # for range

    def describe(self):
        if self.mode == "last_years":
            return "last %d years before %s" % (self.years, self.end or "the latest date")
        if self.mode == "range":
            return "%s to %s" % (self.start or "first date", self.end or "last date")
        return "every date before the latest"


@dataclass
class Stats:
    n: int = 0
    mean: float = float("nan")
    median: float = float("nan")
    min: float = float("nan")
    max: float = float("nan")
    std: float = float("nan")
    mad: float = float("nan")
    first: str = ""           # first and last date in the window
    last: str = ""

    def years_text(self):
        """'2018-2023' or '2018' for the sentence."""
        if not self.first:
            return ""
        a, b = self.first[:4], self.last[:4]
        return a if a == b else "%s-%s" % (a, b)


@dataclass
class Row:
    date: str
    count: int
    source: str
    note: str = ""
    label: str = ""
    in_baseline: bool = False
    used: bool = True              # False: imported count superseded by imagery
    ratio_max: float = None        # count / baseline max (None: no baseline or max 0)
    ratio_mean: float = None
    score: float = None            # robust anomaly score
    status: str = ""               # baseline/normal/high/unprecedented/low/no baseline
    breaks: bool = False


@dataclass
class Result:
    window: Window
    stats: Stats
    rows: list = field(default_factory=list)   # [Row] sorted by date
    latest: Row = None
    summary: str = ""

    def row_for(self, date):
        for r in self.rows:
            if r.date == date and r.used:
                return r
        return None


def _parse_iso(text):
    return datetime.date.fromisoformat(text)


def _minus_years(day, years):
    try:
        return day.replace(year=day.year - years)
    except ValueError:          # 29 February
        return day.replace(year=day.year - years, day=28)


def merge_points(points):
    """Rows per date (see module doc): imagery summed per date, imported
    counts on an imagery date kept but not used."""
    imagery = {}
    rows = []
    for p in points:
        if p.source == IMAGERY:
            r = imagery.get(p.date)
            if r is None:
                r = imagery[p.date] = Row(p.date, int(p.count), IMAGERY, p.note, p.label)
            else:
                r.count += int(p.count)
                r.label = ", ".join(x for x in (r.label, p.label) if x)
                r.note = " ".join(x for x in (r.note, p.note) if x)
    rows.extend(imagery.values())
    for p in points:
        if p.source != IMAGERY:
            rows.append(Row(p.date, int(p.count), IMPORTED, p.note, p.label,
                            used=p.date not in imagery))
    rows.sort(key=lambda r: (r.date, r.source))
    return rows


def in_window(date, window, latest):
    """Whether ISO ``date`` belongs to the baseline window."""
    if window.mode == "last_years":
        end = _parse_iso(window.end) if window.end else _parse_iso(latest)
        start = _minus_years(end, int(window.years))
        return start <= _parse_iso(date) < end
    if window.mode == "range":
        if window.start and date < window.start:
            return False
        if window.end and date > window.end:
            return False
        return True
    return date < latest


def compute_stats(values, dates=()):
    s = Stats(n=len(values))
    if not values:
        return s
    s.mean = statistics.fmean(values)
    s.median = float(statistics.median(values))
    s.min = float(min(values))
    s.max = float(max(values))
    s.std = statistics.stdev(values) if len(values) > 1 else 0.0
    s.mad = float(statistics.median([abs(v - s.median) for v in values]))
    if dates:
        s.first, s.last = min(dates), max(dates)
    return s


def robust_scale(stats):
    """Denominator of the anomaly score, floored (see module doc)."""
    return max(MAD_TO_SIGMA * stats.mad, 0.1 * abs(stats.median), 1.0)


def robust_score(count, stats):
    if stats.n == 0:
        return None
    return (count - stats.median) / robust_scale(stats)


def classify(count, stats):
    """(status, breaks) of a count outside the window."""
    if stats.n == 0:
        return "no baseline", False
    score = robust_score(count, stats)
    if count > stats.max and score >= BREAK_SCORE:
        return "unprecedented", True
    if count < stats.min and score <= -BREAK_SCORE:
        return "low", True
    if count > stats.max or score >= HIGH_SCORE:
        return "high", False
    return "normal", False


def compute(points, window=None):
    """Baseline :class:`Result` for ``points`` ([Point]) and ``window``."""
    window = window or Window()
    if window.mode not in WINDOW_MODES:
        raise InputError("Unknown baseline window %r: use one of %s."
                         % (window.mode, ", ".join(WINDOW_MODES)))
    rows = merge_points(points)
    used = [r for r in rows if r.used]
    if not used:
        res = Result(window, Stats(), rows)
        res.summary = "No counts yet: run the count or import historical counts."
        return res
    latest_date = max(r.date for r in used)
    for r in used:
        r.in_baseline = in_window(r.date, window, latest_date)
    base = [r for r in used if r.in_baseline]
    stats = compute_stats([r.count for r in base], [r.date for r in base])
    for r in used:
        if stats.n:
            r.ratio_mean = r.count / stats.mean if stats.mean > 0 else None
            r.ratio_max = r.count / stats.max if stats.max > 0 else None
            r.score = robust_score(r.count, stats)
        if r.in_baseline:
            r.status = "baseline"
        else:
            r.status, r.breaks = classify(r.count, stats)
    res = Result(window, stats, rows)
    res.latest = [r for r in used if r.date == latest_date][0]
    res.summary = summary_sentence(res)
    return res


def _ratio_text(num, den):
    """num/den with one decimal, halves rounded up (73/20 -> '3.7')."""
    value = Fraction(num) / Fraction(den)
    d = Decimal(value.numerator) / Decimal(value.denominator)
    return str(d.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def ratio_text(value):
    """A ratio with one decimal, halves up like the summary sentence
    (2.25 -> '2.3'); an en dash when there is none."""
    if value is None:
        return "\u2013"
    d = Decimal(repr(round(float(value), 9)))
    return str(d.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _above_max(count, maximum, word_max):
    """'3.7 times the previous maximum of 20', or 'just above ...' when the
    ratio would read 1.0."""
    ratio = _ratio_text(count, int(maximum))
    if ratio == "1.0":
        return "just above %s of %s" % (word_max, _num(maximum))
    return "%s times %s of %s" % (ratio, word_max, _num(maximum))


def _num(value):
    """12.0 -> '12', 11.25 -> '11.2'."""
    if value == int(value):
        return "%d" % value
    return "%.1f" % value


def _cars(n):
    return "%d railcar%s" % (n, "" if n == 1 else "s")


def summary_sentence(res):
    """One plain sentence about the latest date (see module doc for words),
    and the caveat on its count when its imagery has one (part of the area
    not imaged: a low count may be the image, not the yard)."""
    r = res.latest
    if r is None:
        return "No counts yet: run the count or import historical counts."
    text = _verdict(res)
    return "%s %s" % (text, r.note) if r.source == IMAGERY and r.note else text


def _verdict(res):
    r, s = res.latest, res.stats
    head = "%s: %s" % (r.date, _cars(r.count))
    if s.n == 0:
        return ("%s. No baseline yet: count earlier dates or import historical "
                "counts to compare." % head)
    years = s.years_text()
    before = s.last < r.date
    word_max = "the previous maximum" if before else "the baseline maximum"
    few = ""
    if s.n < 3:
        few = " (baseline of only %d date%s)" % (s.n, "" if s.n == 1 else "s")
    if r.in_baseline:
        return ("%s, inside the baseline window (mean %s, %s-%s, %s)."
                % (head, _num(s.mean), _num(s.min), _num(s.max), years))
    if r.status == "unprecedented":
        if s.max > 0:
            return "%s, %s (%s). Unprecedented.%s" % (
                head, _above_max(r.count, s.max, word_max), years, few)
        return "%s, none counted before (%s). Unprecedented.%s" % (head, years, few)
    if r.status == "high":
        if r.count > s.max:
            return ("%s, %s (%s). High, but within the usual spread.%s" % (
                head, _above_max(r.count, s.max, word_max), years, few))
        return ("%s, %s times the baseline mean of %s (%s, maximum %s). High.%s"
                % (head, _ratio_text(Fraction(r.count), Fraction(s.mean).limit_denominator(1000)),
                   _num(s.mean), years, _num(s.max), few))
    if r.status == "low":
        mean_txt = ("%s times the baseline mean of %s" % (
            _ratio_text(Fraction(r.count), Fraction(s.mean).limit_denominator(1000)),
            _num(s.mean))) if s.mean > 0 else "baseline mean 0"
        return ("%s, %s, below the previous minimum of %s (%s). Unusually low.%s"
                % (head, mean_txt, _num(s.min), years, few))
    if r.count < s.min:
        return ("%s, below the previous minimum of %s (%s), but within the usual spread "
                "(median %s). Normal.%s" % (head, _num(s.min), years, _num(s.median), few))
    return ("%s, within the usual range (median %s, %s-%s, %s). Normal.%s"
            % (head, _num(s.median), _num(s.min), _num(s.max), years, few))


# --- imported historical counts -------------------------------------------

def parse_counts_csv(text, name="the CSV file"):
    """Parse ``date,count[,note]`` lines into imported :class:`Point` s.

    A header line (first cell not a date, e.g. ``date,count,note``), blank
    lines and lines starting with ``#`` are skipped. Raises InputError that
    names the line and what is wrong.
    """
    points = []
    seen = {}
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    for lineno, cells in enumerate(reader, start=1):
        cells = [c.strip() for c in cells]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if lineno == 1 and cells[0].lower() in ("date", "day", "acquisition_date"):
            continue
        where = "%s, line %d" % (name, lineno)
        if len(cells) < 2 or not cells[1]:
            raise InputError("%s: expected 'date,count[,note]' but found %r. "
                             "Put the count after the date, separated by a comma."
                             % (where, ",".join(cells)))
        try:
            day = _parse_iso(cells[0])
        except ValueError:
            raise InputError("%s: %r is not a date. Write dates as YYYY-MM-DD, "
                             "for example 2021-06-30." % (where, cells[0]))
        try:
            value = float(cells[1])
        except ValueError:
            value = float("nan")
        if not math.isfinite(value) or value != int(value) or value < 0:
            raise InputError("%s: count %r is not a whole number of railcars "
                             "(0 or more)." % (where, cells[1]))
        iso = day.isoformat()
        if iso in seen:
            raise InputError("%s: date %s already given on line %d. Keep one "
                             "count per date." % (where, iso, seen[iso]))
        seen[iso] = lineno
        note = ", ".join(cells[2:]).strip()  # an unquoted note may hold commas
        points.append(Point(iso, int(value), IMPORTED, note))
    if not points:
        raise InputError("%s holds no counts. Write one 'date,count[,note]' line "
                         "per date, for example 2021-06-30,14." % name)
    return points


def read_counts_csv(path):
    import os
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("Cannot read %s (%s). Choose a UTF-8 text file with "
                         "'date,count[,note]' lines." % (path, e))
    return parse_counts_csv(text, os.path.basename(path))


# --- export ----------------------------------------------------------------

CSV_COLUMNS = ("date", "count", "source", "used", "in_baseline", "status",
               "breaks_baseline", "ratio_to_max", "ratio_to_mean", "robust_score",
               "baseline_n", "baseline_mean", "baseline_median", "baseline_min",
               "baseline_max", "baseline_std", "baseline_mad", "baseline_window",
               "layer", "note")


def _f(v, fmt="%.3f"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return fmt % v


def to_csv(res):
    """CSV text of the table with the baseline statistics on every row."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    s = res.stats
    for r in res.rows:
        w.writerow([
            r.date, r.count, r.source, "yes" if r.used else "no (imagery on this date)",
            "yes" if r.in_baseline else "no", r.status, "yes" if r.breaks else "no",
            _f(r.ratio_max), _f(r.ratio_mean), _f(r.score),
            s.n, _f(s.mean), _f(s.median), _f(s.min, "%g"), _f(s.max, "%g"),
            _f(s.std), _f(s.mad, "%g"), res.window.describe(), r.label, r.note,
        ])
    return out.getvalue()


def window_to_dict(window):
    return {"mode": window.mode, "years": int(window.years),
            "end": window.end, "start": window.start}


def window_from_dict(d):
    d = d or {}
    w = Window(mode=d.get("mode", "before_latest"), years=int(d.get("years", 5) or 5),
               end=d.get("end", "") or "", start=d.get("start", "") or "")
    if w.mode not in WINDOW_MODES:
        w.mode = "before_latest"
    return w
