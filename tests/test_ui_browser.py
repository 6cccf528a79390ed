"""The UI as a user meets it: a real `longdoc ui` server driven by headless Chromium.

Uploads a contract, asks which law governs it, waits for the streamed answer from the local model and
checks that the answer, the passages table and the prompt map are on the page. The screenshot goes to the
test's tmp dir, and to docs/ui.png (the README's) when SAVE_UI_SCREENSHOT=1 (not a LONGDOC_* name: conftest
clears those so a developer's settings cannot change what the tests see). A second test asks of a PDF and checks
that the quote is marked on its rendered page (docs/ui_pdf.png).

Debian's Chromium is used, never a downloaded browser (`make system` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from conftest import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # the page answers with the generator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
QUESTION = "Which state's law governs this agreement?"
CUAD_CONTRACT = (FIXTURES / "cuad_dev" / "contracts"
                 / "OPTIMIZEDTRANSPORTATIONMANAGEMENT,INC_07_26_2000-EX-6.6-DISTRIBUTOR AGREEMENT.txt")
# Loading the model and generating on two CPU cores takes about a minute; on a busy machine, minutes.
ANSWER_TIMEOUT_MS = 600_000
INGEST_TIMEOUT_MS = 300_000


def sample_contract() -> Path:
    """A contract with a governing-law clause: one from sample_docs/ if there is one, else a CUAD contract from the
    fixtures."""
    for path in sorted((ROOT / "sample_docs").glob("*.txt")):
        if "governed by the laws" in path.read_text(encoding="utf-8", errors="ignore"):
            return path
    return CUAD_CONTRACT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"streamlit did not answer on {url} within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path):
    """`longdoc ui` on a free local port with an empty index in tmp_path; yields its URL. Stopped by its PID,
    after which nothing listens on the port.

    A test may pass more settings as LONGDOC_* variables by parametrising this fixture indirectly."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **getattr(request, "param", {}),
    }
    command = [sys.executable, "-c", "from app.cli import main; main()",
               "ui", "--port", str(port), "--index", str(tmp_path / "index")]
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the UI still listens after its PID was stopped"


@pytest.fixture
def server_with_samples(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The `server`, with the sample documents in its library first, as after `make run`."""
    from app import LongDocQA

    with LongDocQA(index_dir=tmp_path / "index") as qa:
        report = qa.ingest([p for p in (ROOT / "sample_docs").iterdir() if p.name != "SOURCES.md"])
    assert not report.skipped, report.skipped
    return request.getfixturevalue("server")


@pytest.fixture
def page(tmp_path: Path):
    """A page in headless Debian Chromium with a throwaway profile. Playwright refuses `--user-data-dir` in
    `launch()`'s args, so the profile is given the way it asks: `launch_persistent_context(user_data_dir)`."""
    assert CHROMIUM.exists(), "Debian's Chromium is missing: run `make system` (apt-get install chromium)"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tmp_path / "chromium",
            executable_path=str(CHROMIUM),
            headless=True,
            viewport={"width": 1440, "height": 1000},
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--disable-quic",
            ],
        )  # fmt: skip
        try:
            yield context.new_page()
        finally:
            context.close()


def upload(page: Page, path: Path, library_size: int = 1) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.locator("input[type=file]").set_input_files(path)
    expect(sidebar.get_by_role("button", name=f"Remove {path.name}")).to_be_visible()  # the file is staged
    sidebar.get_by_role("button", name="Add to library").click()
    expect(sidebar.get_by_role("heading", name=f"Library ({library_size})")).to_be_visible(timeout=INGEST_TIMEOUT_MS)


def ask(page: Page, question: str, turn: int = 1) -> None:
    """Ask the `turn`-th question of the session and wait until its answer, with its prompt map, is drawn."""
    box = page.get_by_placeholder("Ask a question about your documents")
    expect(box).to_be_enabled(timeout=60_000)
    box.fill(question)
    box.press("Enter")
    reply = page.get_by_role("main").get_by_test_id("stChatMessage").nth(2 * turn - 1)
    expect(reply).to_contain_text("Prompt map", timeout=ANSWER_TIMEOUT_MS)
    wait_for_script(page)


def wait_for_script(page: Page, timeout_ms: int = 60_000) -> None:
    """Until the script run has finished drawing. The app's root element says whether a run is under way (the
    Stop button that also says so is not shown with the UI's minimal toolbar); a click during a run can be lost,
    and a download started during one is cancelled when the run redraws its button."""
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning",
                                                           timeout=timeout_ms)


def screenshot(page: Page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main area, so the window is made as tall as that area."""
    main = page.get_by_role("main")
    height = main.evaluate("main => main.scrollHeight")
    page.set_viewport_size({"width": 1440, "height": max(1000, height + 120)})  # + the chat box fixed at the bottom
    main.evaluate("main => main.scrollTo(0, 0)")
    page.wait_for_timeout(1500)  # let the charts redraw at the new size
    page.screenshot(path=path, full_page=True)


def test_upload_ask_and_see_answer_passages_and_prompt_map(server: str, page: Page, tmp_path: Path) -> None:
    contract = sample_contract()
    page.goto(server)
    expect(page.get_by_text("The library is empty")).to_be_visible(timeout=120_000)

    upload(page, contract)
    ask(page, QUESTION)

    main = page.get_by_role("main")
    answer = main.get_by_test_id("stChatMessage").nth(1)
    expect(answer.get_by_test_id("stMarkdown").first).not_to_be_empty()
    expect(main.get_by_text("Passages", exact=True)).to_be_visible()
    expect(main.get_by_test_id("stDataFrame")).to_be_visible()
    expect(main.get_by_test_id("stExpander").first).to_contain_text(contract.name)
    expect(main.get_by_test_id("stVegaLiteChart").first).to_be_visible()
    expect(main.get_by_test_id("stException")).to_have_count(0)
    assert "governed by the laws" in main.text_content(), "the governing-law clause should be among the passages"

    # The quote is marked inside the text around it, and every sentence the support check found unsupported is
    # underlined on the page with its reason, as the answer the page offers for download records them.
    expect(main.locator("mark.quote").first).to_be_visible()
    with page.expect_download() as download:
        page.get_by_test_id("stSidebar").get_by_role("button", name="JSON").click()
    saved = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))[0]
    assert saved["quote"]["text"] == main.locator("mark.quote").first.text_content()
    unsupported = [s for s in saved["support"]["sentences"] if not s["supported"]]
    marked = answer.locator("span.unsupported")
    expect(marked).to_have_count(len(unsupported))
    for i, sentence in enumerate(unsupported):
        expect(marked.nth(i)).to_have_attribute("title", sentence["reason"])

    shot = tmp_path / "ui.png"
    screenshot(page, shot)
    if os.environ.get("SAVE_UI_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "ui.png")


# A short answer is enough here: the page shows the quote, which is found from the question and the passages.
@pytest.mark.parametrize("server", [{"LONGDOC_MAX_NEW_TOKENS": "24"}], indirect=True)
def test_pdf_answer_shows_the_quote_marked_on_its_page(server: str, page: Page, tmp_path: Path) -> None:
    """A PDF's answer shows the page its quote is on, the quote's rectangles over the page image (the other passages'
    lighter), where the downloaded answer JSON places them, and a button opens the page large."""
    pdf = ROOT / "sample_docs" / "cerence_ip_agreement.pdf"
    page.goto(server)
    expect(page.get_by_text("The library is empty")).to_be_visible(timeout=120_000)
    upload(page, pdf)
    ask(page, QUESTION)

    main = page.get_by_role("main")
    view = main.locator(".page-view").first
    image = view.locator("img")
    expect(image).to_be_visible()
    expect(view.locator(".mark.quote").first).to_be_visible()
    assert view.locator(".mark.passage").count() >= 1, "the other passages on the page are marked too"
    expect(main.get_by_test_id("stException")).to_have_count(0)

    with page.expect_download() as download:
        page.get_by_test_id("stSidebar").get_by_role("button", name="JSON").click()
    quote = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))[0]["quote"]
    on_page = [b for b in quote["boxes"] if b["page"] == quote["page"]]
    assert quote["page"] and on_page, quote
    expect(main.get_by_text(f"Page {quote['page']}", exact=True)).to_be_visible()
    expect(view.locator(".mark.quote")).to_have_count(len(on_page))
    # each mark sits on the image where its box says, in the image's own scale; the image and its marks are
    # measured in one step, so a scroll of the page between two measurements cannot move one and not the other
    rects = view.evaluate("""view => {
        const rect = e => { const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; };
        return {frame: rect(view.querySelector("img")), marks: [...view.querySelectorAll(".mark.quote")].map(rect)};
    }""")
    frame = rects["frame"]
    for box, at in zip(on_page, rects["marks"], strict=True):
        assert at["x"] == pytest.approx(frame["x"] + frame["width"] * box["x0"] / box["page_width"], abs=2)
        assert at["y"] == pytest.approx(frame["y"] + frame["height"] * box["y0"] / box["page_height"], abs=2)
    shot = tmp_path / "ui_pdf.png"
    view.screenshot(path=shot)
    if os.environ.get("SAVE_UI_SCREENSHOT") == "1":
        shutil.copy(shot, ROOT / "docs" / "ui_pdf.png")

    main.get_by_role("button", name=f"Open page {quote['page']}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".page-view img")).to_be_visible(timeout=60_000)
    expect(dialog.locator(".mark.quote").first).to_be_visible()


def downloaded_answers(page: Page) -> list[dict]:
    """Every answer of the session, as the page's JSON download holds them."""
    with page.expect_download() as download:
        page.get_by_test_id("stSidebar").get_by_role("button", name="JSON").click()
    return json.loads(Path(download.value.path()).read_text(encoding="utf-8"))


def test_a_fresh_upload_is_what_this_agreement_means_in_a_conversation_and_a_sections_answer_shows_its_map(
        server_with_samples: str, page: Page, tmp_path: Path) -> None:
    page.goto(server_with_samples)
    sidebar, main = page.get_by_test_id("stSidebar"), page.get_by_role("main")
    expect(sidebar.get_by_role("heading", name="Library (4)")).to_be_visible(timeout=120_000)
    expect(main.get_by_text("Questions search the whole library")).to_be_visible()

    upload(page, CUAD_CONTRACT, library_size=5)
    expect(main.get_by_text(f"Questions search {CUAD_CONTRACT.name}")).to_be_visible()  # the upload is in focus
    ask(page, "When does this agreement expire?")
    ask(page, "And which law governs it?", turn=2)
    first, second = downloaded_answers(page)
    for answer in (first, second):
        assert {p["doc"] for p in answer["passages"]} == {CUAD_CONTRACT.name}, answer["passages"]
        assert answer["searched"]["doc"] == CUAD_CONTRACT.name
    assert any("laws of the State of Texas" in p["text"] for p in second["passages"])
    expect(main.get_by_text(f"Searched {CUAD_CONTRACT.name} (the document in focus)")).to_have_count(2)

    # the same contract read section by section: every section's note, and the maps of the notes' sources
    sidebar.get_by_test_id("stSelectbox").filter(has_text="Mode").click()
    page.get_by_role("option", name="sections").click()
    ask(page, "List every obligation of the distributor.", turn=3)
    sections = downloaded_answers(page)[2]
    assert sections["mode"] == "sections" and sections["notes"]
    cited = {rank for n in sections["notes"] if n["used"] for rank in n["sources"]}
    assert cited == {p["rank"] for p in sections["passages"]}
    reply = main.get_by_test_id("stChatMessage").nth(5)
    expect(reply.get_by_text("where each section's note sat in the combining prompt")).to_be_visible()
    expect(reply.get_by_test_id("stExpander").filter(has_text="Sections read:")).to_be_visible()
    expect(reply.get_by_test_id("stVegaLiteChart")).to_have_count(2)  # the prompt map and the document map
    expect(main.get_by_test_id("stException")).to_have_count(0)

    main.get_by_role("button", name="Search the whole library").click()
    expect(main.get_by_text("Questions search the whole library")).to_be_visible()
    screenshot(page, tmp_path / "conversation.png")
