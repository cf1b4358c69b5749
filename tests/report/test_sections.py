"""Tests of stnlab.report.sections: figures declared once, the figure list read from them."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from stnlab.report import html as report
from stnlab.report.sections import FIGURES, SECTIONS, Section, Shown


def test_figures_are_the_sections_figures_in_page_order():
    declared = [item.name for section in SECTIONS for item in section.items if item.name]
    assert tuple(declared) == FIGURES and len(set(FIGURES)) == len(FIGURES)
    assert report.FIGURES is FIGURES  # what write_report deletes when stale
    assert FIGURES[0] == "grid" and FIGURES[-1] == "curves"


def test_a_declared_figure_is_shown_with_its_caption_filled():
    section = Section("A <new> section")
    fig = Figure()

    @section.figure("first", "{count} images")
    def _first(found):
        return fig, {"count": found}

    section.html(lambda found: f"<p>{found} in a table</p>")
    section.figure("skipped", "never shown")(lambda found: None)
    section.html(lambda found: "")
    section.figure("missing", "never shown")(lambda found: "<p>why it is missing</p>")

    parts = list(section.show(3))
    assert parts == [
        "<h2>A &lt;new&gt; section</h2>",
        Shown("first", fig, "3 images"),
        "<p>3 in a table</p>",
        "<p>why it is missing</p>",
    ]
    assert "first" not in FIGURES  # a scratch section is not on the page


def test_an_absent_section_shows_only_its_note():
    section = Section("Empty", absent=lambda found: "<p>nothing to show</p>")
    section.figure("never", "caption")(lambda found: pytest.fail("drawn"))
    assert list(section.show(None)) == ["<h2>Empty</h2>", "<p>nothing to show</p>"]


def test_a_figure_name_is_declared_once():
    with pytest.raises(ValueError, match="'hardest' is declared twice"):
        Section("Again").figure("hardest", "caption")
    section = Section("Twice")
    section.figure("one", "caption")(lambda found: None)
    with pytest.raises(ValueError, match="'one' is declared twice"):
        section.figure("one", "caption")
