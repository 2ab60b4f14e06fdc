"""The feedback page and the class report as a browser shows them.

Headless Chromium (Debian's ``chromium`` package) driven by Playwright opens each page and
checks that every picture loaded and that the numbers on the page equal the results the page
was made from. Screenshots go to ``tests/output/screenshots/`` for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_export import backprop_with_gradients, class_results, injection, partial

from grader.export import write_class_report, write_feedback
from grader.export._html import points
from grader.results import SubmissionResult

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).parent / "output" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run the setup (`.ci/run` installs Debian's "
            "chromium package; by hand: `sudo apt-get install chromium`), or point CHROMIUM at it"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "playwright is not installed: run `pip install -e '.[dev]'` (no browser "
            "download is needed; the tests drive the system Chromium)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser: Any, path: Path, screenshot: str) -> tuple[Any, list[str]]:
    """The page at ``path``, screenshot taken, and the list of dialogs it opens (none wanted)."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / screenshot), full_page=True)
    return page, dialogs


def _images(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(
        """() => Array.from(document.images, img => ({
            complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
            alt: img.alt }))"""
    )


def _text(page: Any, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def _assert_all_loaded(images: list[dict[str, Any]], expected: int) -> None:
    assert len(images) == expected
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image


@pytest.mark.parametrize(
    ("make", "pictures"),
    [(partial, 2), (backprop_with_gradients, 1), (injection, 0)],
)
def test_feedback_page_in_chromium(browser, tmp_path, make, pictures):
    result: SubmissionResult = make()
    path = tmp_path / "feedback.html"
    write_feedback(result, path)
    page, dialogs = _open(browser, path, f"feedback_{result.student}.png")

    _assert_all_loaded(_images(page), pictures)
    assert _text(page, "#total-score") == points(result.score)
    assert _text(page, "#max-score") == points(result.max_score)
    for function, (earned, available) in result.by_function().items():
        row = page.locator(f'#functions tr[data-function="{function}"]')
        assert row.locator(".earned").inner_text() == points(earned)
        assert row.locator(".available").inner_text() == points(available)
    failed = [t.name for t in result.tests if t.status != "passed"]
    shown = page.eval_on_selector_all(".to-fix", "cards => cards.map(c => c.dataset.test)")
    assert shown == failed
    assert _text(page, "#isolation") == result.isolation
    assert dialogs == []
    page.close()


def test_injected_html_stays_text(browser, tmp_path):
    result = injection()
    path = tmp_path / "feedback.html"
    write_feedback(result, path)
    page, dialogs = _open(browser, path, "feedback_injection.png")
    assert page.locator("script").count() == 0
    card = page.locator('.to-fix[data-test="build_cnn: parameter count"] .message')
    assert card.inner_text() == result.tests[2].message
    assert dialogs == []
    page.close()


def test_class_report_in_chromium(browser, tmp_path):
    results = class_results()
    path = tmp_path / "report.html"
    write_class_report(results, path)
    page, dialogs = _open(browser, path, "class_report.png")

    _assert_all_loaded(_images(page), 2)
    assert _text(page, "#submission-count") == str(len(results))
    ran: dict[str, int] = {}
    passed: dict[str, int] = {}
    for result in results:
        for test in result.tests:
            ran[test.name] = ran.get(test.name, 0) + 1
            passed[test.name] = passed.get(test.name, 0) + (test.status == "passed")
    rows = page.eval_on_selector_all(
        "#pass-rates tbody tr",
        """rows => rows.map(r => [r.dataset.test, r.querySelector('.passed').innerText,
                                  r.querySelector('.ran').innerText,
                                  r.querySelector('.rate').innerText])""",
    )
    assert sorted(row[0] for row in rows) == sorted(ran)
    for name, shown_passed, shown_ran, rate in rows:
        assert (int(shown_passed), int(shown_ran)) == (passed[name], ran[name])
        assert rate == f"{100 * passed[name] / ran[name]:.0f}%"
    shown_rates = [int(rate.rstrip("%")) for *_, rate in rows]
    assert shown_rates == sorted(shown_rates)  # most failed first

    graded = [r for r in results if r.max_score > 0]
    bands = page.eval_on_selector_all(
        "#histogram td.count", "cells => cells.map(c => Number(c.innerText))"
    )
    assert len(bands) == 10 and sum(bands) == len(graded)
    for result in graded:
        band = min(int(100 * result.score / result.max_score // 10), 9)
        assert bands[band] >= 1
    limited = page.eval_on_selector_all(
        "#limits-hit tbody tr", "rows => rows.map(r => r.dataset.student)"
    )
    assert limited == sorted(r.student for r in results if r.limits_hit)
    assert dialogs == []
    page.close()
