"""The curation widget: traits follow the report; thresholds typed in the browser re-threshold it; keep/drop clicks
give the equivalent report.clean(...) line, which reproduces the choice."""

import pytest

import compound as cp
from compound.widgets.curation import CurationWidget

TRIAGE = cp.zoo.tasks["triage"]


@pytest.fixture()
def report():
    rows = TRIAGE.train[:120]
    copy = rows[5].copy()
    copy["ticket"] = copy["ticket"] + " Thanks."
    return cp.curate(rows + [copy, TRIAGE.dev[0]], against={"dev": TRIAGE.dev}, fields=["ticket", "category"])


def test_traits_follow_the_report(report):
    widget = CurationWidget(report)
    assert widget.summary["examples"] == 122
    assert {c["kind"] for c in widget.checks} == set(report.kinds)
    assert {(row["index"], row["kind"]) for row in widget.issues} >= {(120, "duplicate"), (121, "leak")}
    assert widget.code == "report.clean()"


def test_a_typed_threshold_rethresholds_the_report_and_a_bad_one_says_why(report):
    widget = CurationWidget(report)
    widget.thresholds = {"duplicate": 0.999}  # what the number input does
    assert report.thresholds["duplicate"] == 0.999
    assert report.flagged("duplicate") == {} and not any(r["kind"] == "duplicate" for r in widget.issues)
    assert widget.code == "report.clean(thresholds={'duplicate': 0.999})"
    widget.thresholds = {"duplicate": 0.1}
    assert "below" in widget.error and report.thresholds["duplicate"] == 0.999


def test_keep_and_drop_print_a_line_that_reproduces_the_choice(report):
    widget = CurationWidget(report)
    widget.keep, widget.drop = [121], [0]
    assert widget.code == "report.clean(keep=[121], drop=[0])"
    kept = eval(widget.code, {"report": report})  # the line a user pastes
    assert len(kept) == 122 - len(report.flagged("duplicate")) - 1 and kept[-1].ticket == TRIAGE.dev[0].ticket


def test_the_widget_refuses_other_objects_and_the_report_is_registered_with_its_view(report):
    from compound.widgets import view_class

    with pytest.raises(TypeError, match="cp.curate report"):
        CurationWidget(object())
    assert view_class(report) is CurationWidget  # what a kernel's display formatter shows live
    assert repr(report).startswith("CurationReport") and "<table" in report._repr_html_()  # the static record
