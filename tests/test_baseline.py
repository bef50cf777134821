"""Baseline numbers, anomaly flags, summary sentences, CSV import/export.
Pure: no QGIS needed."""
import csv
import io

import pytest

from railcar_counter.plugin.core import baseline as bl
from railcar_counter.plugin.core.errors import InputError

HISTORY = [("2018-06-01", 12), ("2019-03-10", 8), ("2019-09-22", 15),
           ("2020-05-05", 20), ("2021-01-17", 11), ("2021-08-30", 14),
           ("2022-04-12", 9), ("2023-02-03", 13)]


def pts(pairs, source=bl.IMAGERY):
    return [bl.Point(d, c, source) for d, c in pairs]


def test_default_window_is_every_date_before_latest_and_stats_are_right():
    res = bl.compute(pts(HISTORY + [("2023-10-05", 73)]))
    s = res.stats
    counts = [c for _, c in HISTORY]
    assert s.n == 8
    assert s.mean == pytest.approx(sum(counts) / 8)
    assert s.median == 12.5
    assert (s.min, s.max) == (8, 20)
    assert s.std == pytest.approx(3.7702, abs=1e-3)      # sample std (n-1)
    assert s.mad == 2.0            # |x - 12.5| sorted: .5 .5 1.5 1.5 2.5 3.5 4.5 7.5
    assert (s.first, s.last) == ("2018-06-01", "2023-02-03")
    latest = res.latest
    assert latest.date == "2023-10-05" and not latest.in_baseline
    assert latest.ratio_max == pytest.approx(73 / 20)
    assert latest.ratio_mean == pytest.approx(73 / s.mean)
    assert latest.score == pytest.approx((73 - 12.5) / (1.4826 * 2.0))
    assert latest.status == "unprecedented" and latest.breaks
    assert all(r.status == "baseline" and not r.breaks for r in res.rows[:-1])


def test_summary_sentence_unprecedented_matches_issue_wording():
    res = bl.compute(pts(HISTORY + [("2023-10-05", 73)]))
    assert res.summary == ("2023-10-05: 73 railcars, 3.7 times the previous "
                           "maximum of 20 (2018-2023). Unprecedented.")


@pytest.mark.parametrize("count,status,breaks,words", [
    (13, "normal", False, "within the usual range (median 12.5, 8-20, 2018-2023). Normal."),
    (6, "normal", False, "6 railcars, below the previous minimum of 8 (2018-2023), but within "
                         "the usual spread (median 12.5). Normal."),
    (19, "high", False, "High."),                 # score >= 2, not above max
    (21, "high", False, "21 railcars, 1.1 times the previous maximum of 20 (2018-2023). "
                        "High, but within the usual spread."),
    (0, "low", True, "below the previous minimum of 8 (2018-2023). Unusually low."),
    (30, "unprecedented", True, "Unprecedented."),
])
def test_statuses_and_sentences(count, status, breaks, words):
    res = bl.compute(pts(HISTORY + [("2023-10-05", count)]))
    assert (res.latest.status, res.latest.breaks) == (status, breaks)
    assert res.summary.startswith("2023-10-05: %d railcar" % count)
    assert words in res.summary


def test_just_above_the_maximum_reads_as_such():
    busy = [("2018-01-%02d" % (i + 1), c) for i, c in enumerate([35, 38, 40, 36, 37, 39, 38, 36])]
    res = bl.compute(pts(busy + [("2019-01-01", 41)]))
    assert res.latest.status == "high"
    assert res.summary == ("2019-01-01: 41 railcars, just above the previous maximum of 40 "
                           "(2018). High, but within the usual spread.")


def test_no_baseline_and_no_counts():
    res = bl.compute(pts([("2023-10-05", 7)]))
    assert res.stats.n == 0 and res.latest.status == "no baseline"
    assert not res.latest.breaks and res.latest.score is None
    assert "No baseline yet" in res.summary
    assert bl.compute([]).summary.startswith("No counts yet")
    one = bl.compute(pts([("2023-10-05", 1), ("2022-01-01", 1)]))
    assert one.summary.startswith("2023-10-05: 1 railcar,")


def test_mad_zero_uses_floor_instead_of_infinity():
    flat = [("201%d-01-01" % i, 20) for i in range(8)]
    res = bl.compute(pts(flat + [("2019-06-01", 21)]))
    assert res.stats.mad == 0
    # floor = max(1, 10 % of median 20) = 2 -> one extra car scores 0.5
    assert res.latest.score == pytest.approx(0.5)
    assert res.latest.status == "high" and not res.latest.breaks
    res = bl.compute(pts(flat + [("2019-06-01", 40)]))
    assert res.latest.score == pytest.approx(10.0) and res.latest.breaks


def test_last_years_window_and_range_window():
    points = pts(HISTORY + [("2023-10-05", 73)])
    res = bl.compute(points, bl.Window("last_years", years=2))
    base = [r.date for r in res.rows if r.in_baseline]
    assert base == ["2022-04-12", "2023-02-03"]      # [2021-10-05, 2023-10-05)
    assert res.stats.n == 2
    # dates before the window are evaluated too
    early = res.row_for("2018-06-01")
    assert not early.in_baseline and early.status in ("normal", "high", "low", "unprecedented")
    res = bl.compute(points, bl.Window("range", start="2019-01-01", end="2020-12-31"))
    assert [r.date for r in res.rows if r.in_baseline] == [
        "2019-03-10", "2019-09-22", "2020-05-05"]
    assert res.stats.max == 20
    assert res.latest.status == "unprecedented"
    # explicit end date for last_years
    res = bl.compute(points, bl.Window("last_years", years=1, end="2020-06-01"))
    assert [r.date for r in res.rows if r.in_baseline] == ["2019-09-22", "2020-05-05"]
    with pytest.raises(InputError):
        bl.compute(points, bl.Window("weekly"))


def test_imported_counts_join_the_baseline_and_imagery_wins_on_same_date():
    imported = bl.parse_counts_csv(
        "date,count,note\n2015-05-01,10,old report\n2016-05-01,30\n2023-10-05,99,dup\n")
    res = bl.compute(pts([("2023-10-05", 73), ("2022-01-01", 12)]) + imported)
    assert res.stats.n == 3 and res.stats.max == 30
    assert res.stats.first == "2015-05-01"
    dup = [r for r in res.rows if r.date == "2023-10-05" and r.source == bl.IMPORTED][0]
    assert not dup.used
    assert res.latest.source == bl.IMAGERY and res.latest.count == 73
    assert "(2015-2022)" in res.summary


def test_same_date_imagery_layers_are_summed():
    res = bl.compute([bl.Point("2023-10-05", 5, label="west"),
                      bl.Point("2023-10-05", 7, label="east")])
    assert res.latest.count == 12 and res.latest.label == "west, east"


def test_a_caveat_on_the_latest_count_is_said_after_the_verdict():
    """A latest image that covered only part of the site: the sentence says
    what the number is compared with, then why it may be low. An imported
    count's note (where it came from) is not a caveat."""
    caveat = "Only 40 % of the area of interest has image data."
    res = bl.compute(pts(HISTORY) + [bl.Point("2023-10-05", 0, note=caveat)])
    assert res.latest.status == "low"
    assert res.summary.endswith("Unusually low. " + caveat)
    imported = bl.parse_counts_csv("2023-10-05,3,from a report\n")
    assert "report" not in bl.compute(pts(HISTORY) + imported).summary


@pytest.mark.parametrize("text,words", [
    ("2021-01-01\n", "line 1"),
    ("date,count\n2021-13-01,4\n", "line 2: '2021-13-01' is not a date"),
    ("2021-01-01,4\n2021-01-02,four\n", "line 2: count 'four' is not a whole number"),
    ("2021-01-01,-3\n", "not a whole number"),
    ("2021-01-01,2.5\n", "not a whole number"),
    ("2021-01-01,4\n\n2021-01-01,5\n", "line 3: date 2021-01-01 already given on line 1"),
    ("date,count\n", "holds no counts"),
])
def test_csv_import_errors_say_line_and_what_is_wrong(text, words):
    with pytest.raises(InputError) as e:
        bl.parse_counts_csv(text, "old.csv")
    assert words in str(e.value)
    assert "old.csv" in str(e.value)


def test_csv_import_accepts_comments_bom_notes_with_commas(tmp_path):
    p = tmp_path / "hist.csv"
    p.write_text("\ufeffdate,count,note\n# from 2019 report\n2019-02-02, 14 ,seen, partly cloudy\n",
                 encoding="utf-8")
    (pt,) = bl.read_counts_csv(str(p))
    assert (pt.date, pt.count, pt.source, pt.note) == ("2019-02-02", 14, "imported",
                                                        "seen, partly cloudy")
    with pytest.raises(InputError, match="Cannot read"):
        bl.read_counts_csv(str(tmp_path / "missing.csv"))


def test_csv_export_has_stats_ratios_flags():
    imported = [bl.Point("2017-01-01", 10, bl.IMPORTED, "old")]
    res = bl.compute(pts(HISTORY + [("2023-10-05", 73)]) + imported)
    rows = list(csv.DictReader(io.StringIO(bl.to_csv(res))))
    assert [r["date"] for r in rows][:2] == ["2017-01-01", "2018-06-01"]
    last = rows[-1]
    assert last["count"] == "73" and last["source"] == "imagery"
    assert last["status"] == "unprecedented" and last["breaks_baseline"] == "yes"
    assert float(last["ratio_to_max"]) == pytest.approx(3.65)
    assert last["baseline_n"] == "9" and last["baseline_max"] == "20"
    assert rows[0]["source"] == "imported" and rows[0]["in_baseline"] == "yes"
    assert rows[0]["note"] == "old"


def test_window_round_trip():
    w = bl.Window("range", years=3, start="2019-01-01", end="2020-01-01")
    assert bl.window_from_dict(bl.window_to_dict(w)) == w
    assert bl.window_from_dict({"mode": "bogus"}).mode == "before_latest"


def test_ratio_text_rounds_like_the_sentence():
    assert bl.ratio_text(63 / 28) == "2.3" == bl._ratio_text(63, 28)
    assert bl.ratio_text(73 / 20) == "3.7"
    assert bl.ratio_text(None) == "\u2013"


def test_chart_draws_a_partly_imaged_date_hollow():
    """A date whose image covered only part of the site is drawn as an open
    circle, named in the legend, and can still be picked."""
    from railcar_counter.plugin.core import series_chart
    caveat = "Only 40 % of the area of interest has image data."
    res = bl.compute(pts(HISTORY) + [bl.Point("2023-10-05", 5, note=caveat)])
    fig = series_chart.new_figure()
    ax, picks = series_chart.draw(fig, res)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "part of area imaged" in labels and "imagery" in labels
    (hollow,) = [a for a, dates in picks.items() if dates == ["2023-10-05"]]
    assert tuple(hollow.get_facecolor()[0][:3]) == (1.0, 1.0, 1.0)
    assert sum(len(d) for d in picks.values()) == len(HISTORY) + 1


def test_chart_legend_fits_a_narrow_dock_and_a_wide_page():
    """The legend sits above the plot in as many columns as the width holds:
    inside the figure in a 300 px dock, one row across a saved chart."""
    from railcar_counter.plugin.core import series_chart
    res = bl.compute(pts(HISTORY) + [bl.Point("2023-10-05", 73)])
    for width_in, rows in ((3.0, None), (6.4, 1)):
        fig = series_chart.new_figure(width_in, 2.8, 100)
        ax, _ = series_chart.draw(fig, res)
        legend = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
        assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1, (width_in, legend)
        if rows:
            assert legend.height < 2 * 8 * 100 / 72, legend      # one row of 7-point text
