"""The review page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Install the browser with ``make browser``. Without it these tests skip — except in CI
(``CI=true``), where a missing browser fails the run, so CI always runs them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from extraction.models import Document
from extraction.review.page import write_review_page
from extraction.review.scorecard import build_scorecard
from extraction.review.verdict_files import SOURCE
from testing.review_factory import Sample, make_sample
from tests.cli_helpers import run_cli

CHROMIUM = os.environ.get("EXTRACTFLOW_CHROMIUM") or shutil.which("chromium") \
    or "/usr/bin/chromium"
SCRIPT_DOC = "Sponsor: Acme 1. <script>window.__ran = 1; alert(1)</script>" \
    '<img src=x onerror="window.__ran = 2; alert(2)"> Phase 2 trial.'


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a dev dependency
        if _in_ci():
            pytest.fail(f"playwright is not installed ({exc}); CI=true: browser tests must run")
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM}: run `make browser`"
        if _in_ci():
            pytest.fail(message + " (CI=true: browser tests must run)")
        pytest.skip(message)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh offline browser context (its own localStorage) with every problem recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  accept_downloads=True)
    context.set_offline(True)
    pg = context.new_page()
    pg.problems = []
    pg.dialogs = []
    pg.requests = []
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(m.text))
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    context.close()


def _ground(cell: Any, document: Document, quote: str) -> None:
    start = document.text.index(quote)
    cell.evidence_quote, cell.evidence_start, cell.evidence_end = quote, start, start + len(quote)
    cell.grounded = True


def _sample(session: Session) -> Sample:
    """Three documents; doc1 holds script and HTML; one value per status; one ungrounded."""
    s = make_sample(session, {
        (0, "sponsor"): "Acme 0", (0, "phase"): "Phase 2", (0, "enrollment"): 100,
        (1, "sponsor"): "Acme 1", (1, "phase"): "Phase 2", (1, "enrollment"): None,
        (2, "sponsor"): "Acme 2", (2, "phase"): "FAILED",
    })
    s.documents[1].text = SCRIPT_DOC
    for i in range(3):
        _ground(s.cells[(i, "sponsor")], s.documents[i], f"Acme {i}")
    _ground(s.cells[(1, "phase")], s.documents[1], "Phase 2")
    s.cells[(0, "phase")].grounded, s.cells[(0, "phase")].evidence_quote = False, "phase two"
    s.cells[(2, "sponsor")].confidence = 0.2
    s.cells[(0, "enrollment")].confidence = 0.4
    session.commit()
    return s


def _open(page: Any, path: Path) -> None:
    page.goto(path.as_uri())
    page.wait_for_selector("html[data-ready=true]", timeout=10_000)


def _open_doc(page: Any, name: str) -> None:
    page.locator("#doc-list li", has_text=name).click()
    page.wait_for_selector(f"#values h2:text-is('{name}')")


def _card(page: Any, variable: str) -> Any:
    return page.locator(".value", has=page.locator(f".var:text-is('{variable}')"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_page_opens_offline_and_highlights_a_grounded_value(session: Session, page: Any,
                                                            tmp_path: Path) -> None:
    from playwright.sync_api import expect

    s = _sample(session)
    out = write_review_page(session, s.job.id, tmp_path / "review.html")
    _open(page, out.path)
    assert page.problems == []
    assert all(url.startswith(("file:", "data:", "blob:")) for url in page.requests), \
        page.requests
    expect(page.locator("#doc-list li")).to_have_count(3)
    expect(page.locator("#doc-list li").first).to_contain_text("3 ok1 low0/3 reviewed")

    _open_doc(page, "doc1.txt")
    mark = page.locator("#doc-text mark").first
    expect(mark).to_have_text("Acme 1")
    _card(page, "sponsor").click()
    key = _card(page, "sponsor").get_attribute("data-i")
    flashed = page.locator(f'#doc-text mark[data-v~="{key}"]')
    expect(flashed).to_have_class("ev active flash")
    expect(flashed).to_be_in_viewport()

    _open_doc(page, "doc0.txt")
    expect(_card(page, "phase").locator(".tag.ungrounded")).to_have_text("ungrounded")
    expect(_card(page, "phase").locator("blockquote")).to_have_text("phase two")
    _card(page, "phase").click()
    expect(page.locator("#notice")).to_contain_text("Ungrounded")
    page.screenshot(path=str(tmp_path / "review-page.png"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_script_in_a_document_is_shown_as_text_and_never_runs(session: Session, page: Any,
                                                              tmp_path: Path) -> None:
    from playwright.sync_api import expect

    s = _sample(session)
    out = write_review_page(session, s.job.id, tmp_path / "review.html")
    _open(page, out.path)
    _open_doc(page, "doc1.txt")
    expect(page.locator("#doc-text")).to_contain_text("<script>window.__ran = 1; alert(1)</script>")
    page.wait_for_timeout(300)  # time for an onerror handler, were one ever attached
    assert page.evaluate("window.__ran") is None
    assert page.dialogs == [] and page.problems == []
    assert page.locator("#doc-text img, #doc-text script").count() == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_filters_and_least_confident_first(session: Session, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    s = _sample(session)
    out = write_review_page(session, s.job.id, tmp_path / "review.html")
    _open(page, out.path)
    docs = page.locator("#doc-list li .name")

    page.select_option("#f-status", "not_found")
    expect(docs).to_have_text(["doc1.txt"])
    expect(page.locator("#values .value .var")).to_have_text(["enrollment"])
    page.select_option("#f-status", "failed")
    expect(docs).to_have_text(["doc2.txt"])
    page.select_option("#f-status", "")

    page.select_option("#f-variable", "enrollment")
    expect(docs).to_have_text(["doc0.txt", "doc1.txt"])
    page.select_option("#f-variable", "")

    page.fill("#f-below", "0.5")
    expect(docs).to_have_text(["doc0.txt", "doc1.txt", "doc2.txt"])  # nulls count as 0
    page.fill("#f-below", "0.3")
    page.select_option("#f-status", "ok")
    expect(docs).to_have_text(["doc2.txt"])
    page.fill("#f-below", "")
    page.select_option("#f-status", "")

    page.select_option("#f-sort", "confidence")
    expect(docs.first).to_have_text("doc1.txt")  # its not-found value has no confidence
    _open_doc(page, "doc0.txt")
    expect(page.locator("#values .value .var")).to_have_text(["enrollment", "sponsor", "phase"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_options_set_the_filters_the_page_opens_with(session: Session, page: Any,
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect

    s = _sample(session)
    out = write_review_page(session, s.job.id, tmp_path / "review.html", min_confidence=0.5,
                            status="ok", sort="confidence")
    _open(page, out.path)
    expect(page.locator("#doc-list li .name")).to_have_text(["doc2.txt", "doc0.txt"])
    expect(page.locator("#f-below")).to_have_value("0.5")
    expect(page.locator("#doc-list li").first).to_contain_text("1 low")


def test_a_verdict_is_kept_exported_imported_and_scored(session: Session, page: Any,
                                                        tmp_path: Path) -> None:
    from playwright.sync_api import expect

    s = _sample(session)
    out = write_review_page(session, s.job.id, tmp_path / "review.html")
    _open(page, out.path)
    _open_doc(page, "doc0.txt")
    _card(page, "phase").get_by_role("button", name="✗ Wrong").click()
    _card(page, "phase").locator("select.corrected").select_option("Phase 3")
    _card(page, "phase").locator("textarea.comment").fill("says phase III in the title")
    _card(page, "phase").locator("textarea.comment").blur()
    _card(page, "sponsor").get_by_role("button", name="✓ Correct").click()
    _card(page, "sponsor").locator("textarea.comment").fill("named in the first line")
    _card(page, "sponsor").locator("textarea.comment").blur()
    expect(page.locator("#verdict-count")).to_have_text("2 verdicts in this browser")

    page.reload()  # kept in localStorage
    page.wait_for_selector("html[data-ready=true]")
    _open_doc(page, "doc0.txt")
    expect(_card(page, "phase").locator("select.corrected")).to_have_value("Phase 3")
    expect(page.locator("#doc-list li", has_text="doc0.txt")).to_contain_text("2/3 reviewed")

    with page.expect_download() as download:
        page.click("#export-json")
    exported = tmp_path / download.value.suggested_filename
    download.value.save_as(exported)
    with page.expect_download() as download_csv:
        page.click("#export-csv")
    exported_csv = tmp_path / download_csv.value.suggested_filename
    download_csv.value.save_as(exported_csv)
    assert exported.suffix == ".json" and exported_csv.suffix == ".csv"
    body = json.loads(exported.read_text(encoding="utf-8"))
    assert body["job_id"] == str(s.job.id) and len(body["verdicts"]) == 2

    result = run_cli("review", "import", str(exported))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "2 new" in result.stdout
    again = run_cli("review", "import", str(exported_csv))
    assert again.exit_code == 0 and "2 unchanged" in again.stdout, again.stdout + again.stderr

    session.expire_all()
    card = build_scorecard(session, "trials")
    phase = next(v for v in card.versions if v.variable == "phase")
    sponsor = next(v for v in card.versions if v.variable == "sponsor")
    assert (phase.reviewed, phase.correct, sponsor.reviewed, sponsor.correct) == (1, 0, 1, 1)
    assert card.reviewed == 2
    from extraction.review.feedback import list_feedback
    views = {v.variable: v for v in list_feedback(session, "trials")}
    assert views["phase"].corrected_value == "Phase 3" and views["phase"].source == SOURCE
    assert views["phase"].comment == "says phase III in the title"
    assert views["sponsor"].is_correct and views["sponsor"].comment == "named in the first line"

    # a page written after the import shows the stored verdicts
    again_page = write_review_page(session, s.job.id, tmp_path / "review2.html")
    page.evaluate("localStorage.clear()")
    _open(page, again_page.path)
    _open_doc(page, "doc0.txt")
    expect(_card(page, "phase").locator(".saved")).to_have_text(
        f"recorded: wrong → Phase 3 ({SOURCE})")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_long_document_list_grows_as_it_is_scrolled(session: Session, page: Any,
                                                      tmp_path: Path) -> None:
    from playwright.sync_api import expect

    s = make_sample(session, {(i, "sponsor"): f"Acme {i}" for i in range(230)},
                    n_documents=230)
    out = write_review_page(session, s.job.id, tmp_path / "review.html")
    _open(page, out.path)
    rows = page.locator("#doc-list li[data-doc]")
    expect(rows).to_have_count(200)
    expect(page.locator("#doc-list .more-docs")).to_have_text("show 30 more of 30 documents")
    page.locator("#doc-list .more-docs").scroll_into_view_if_needed()
    expect(rows).to_have_count(230)
    expect(page.locator("#doc-list .more-docs")).to_have_count(0)
    page.fill("#doc-search", "doc229")
    expect(rows).to_have_text(["doc229.txt1 ok0/1 reviewed"])
