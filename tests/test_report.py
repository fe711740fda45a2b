"""The static HTML report opens in headless Chromium (Debian ``chromium``) from disk: every page loads
and every image on it is present (trend plots and the camera's latest night maps). The lake holds
SYNTHETIC summary rows and a SYNTHETIC night map (skylake.synthetic.summary_rows)."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import numpy as np
import pytest

from skylake.lake import Lake
from skylake.report import build_report, slug
from skylake.synthetic.summary_rows import commit_map, commit_night

HOSTILE_FILTER = "<b>r'</b>; DROP TABLE nights"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have Debian chromium (.ci/run installs it: apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    lake = Lake.init(tmp / "lake")
    rng = np.random.default_rng(9)
    start = dt.date(2025, 6, 1)
    for i in range(12):
        night = (start + dt.timedelta(days=3 * i)).isoformat()
        commit_night(lake, night, 20, rng, zp_airmass1=21.3 - 0.001 * i, cloudy_fraction=0.5 if i == 4 else 0.0)
    commit_night(lake, start.isoformat().replace("06-01", "06-02"), 10, rng, filt=HOSTILE_FILTER)
    commit_map(lake, (start + dt.timedelta(days=30)).isoformat(), rng)  # an older night's map is not shown
    commit_map(lake, (start + dt.timedelta(days=33)).isoformat(), rng)
    events = tmp / "events.csv"
    events.write_text("date,instrument,kind,note\n2025-06-15,SkyCamZ,mirror_cleaning,\n")
    from skylake.db import refresh

    refresh(lake, events=events)
    return build_report(lake, tmp / "site", checkplots=False)


def test_report_pages_and_images_load_in_headless_chromium(report):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    # per page: the trend plot and the latest map's transparency and sky PNGs (both pages are one camera's)
    assert len(report.pages) == 2 and len(report.images) == 6
    maps = sorted({p for p in report.images if p.name.startswith("map-night-2025-07-04-skycamz-equatorial-nside8")})
    assert [p.name.split("-")[-1] for p in maps] == ["sky.png", "transparency.png"] and all(p.exists() for p in maps)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--allow-file-access-from-files"])
        page = browser.new_page()
        page.goto(report.index.as_uri())
        assert page.title().startswith("skylake")
        links = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
        assert len(links) == 2
        seen_images = 0
        for link in links:
            page.goto(link)
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({src: e.src, ok: e.complete && e.naturalWidth > 0, w: e.naturalWidth}))"
            )
            assert images, f"no image on {link}"
            for img in images:
                assert img["ok"], f"image {img['src']} on {link} did not load"
                assert img["w"] >= 400
            seen_images += len(images)
            back = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
            assert report.index.as_uri() in back
        browser.close()
    assert seen_images == len(report.images)


def test_hostile_names_are_escaped_and_get_their_own_page(report):
    index = report.index.read_text()
    assert "<b>r'</b>" not in index and "&lt;b&gt;r&#x27;&lt;/b&gt;" in index
    page = report.index.parent / f"{slug('SkyCamZ', HOSTILE_FILTER)}.html"
    assert page.exists() and page in report.pages
    assert "DROP TABLE" in page.read_text()  # shown, verbatim but escaped
    assert slug("a/b", "c") != slug("a_b", "c")  # different names never share a page


@pytest.mark.parametrize("width", [800, 1400])
def test_pages_fit_the_window_and_wide_tables_scroll(report, width, tmp_path):
    """No page is wider than the window at 800 or 1400 px: wide tables scroll inside their box. The
    screenshots are written beside the test's files for people to look at."""
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--allow-file-access-from-files"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        for html_page in [report.index, *report.pages]:
            page.goto(html_page.as_uri())
            page.wait_for_load_state("load")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{html_page.name} is {overflow} px wider than a {width} px window"
            page.screenshot(path=str(tmp_path / f"{html_page.stem}-{width}.png"), full_page=True)
        browser.close()
