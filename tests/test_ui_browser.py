"""The UI as a user meets it: a real `streamlit run` server driven by headless Chromium.

Uploads a contract, asks which law governs it, waits for the streamed answer from the local model and
checks that the answer, the passages table and the prompt map are on the page. The screenshot goes to the
test's tmp dir, and to docs/ui.png (the README's) when SAVE_UI_SCREENSHOT=1 (not a LONGDOC_* name: conftest
clears those so a developer's settings cannot change what the tests see).

Debian's Chromium is used, never a downloaded browser (`make browser` installs it).
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
def server(tmp_path: Path):
    """`streamlit run ui/streamlit_app.py` on a free local port with an empty index in tmp_path; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    env = os.environ | {
        "LONGDOC_INDEX_DIR": str(tmp_path / "index"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "streamlit_app.py"),
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
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


@pytest.fixture
def page(tmp_path: Path):
    """A page in headless Debian Chromium with a throwaway profile. Playwright refuses `--user-data-dir` in
    `launch()`'s args, so the profile is given the way it asks: `launch_persistent_context(user_data_dir)`."""
    assert CHROMIUM.exists(), "Debian's Chromium is missing: run `make browser` (apt-get install chromium)"
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


def upload(page: Page, path: Path) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.locator("input[type=file]").set_input_files(path)
    expect(sidebar.get_by_role("button", name=f"Remove {path.name}")).to_be_visible()  # the file is staged
    sidebar.get_by_role("button", name="Add to library").click()
    expect(sidebar.get_by_role("heading", name="Library (1)")).to_be_visible(timeout=INGEST_TIMEOUT_MS)


def ask(page: Page, question: str) -> None:
    box = page.get_by_placeholder("Ask a question about your documents")
    expect(box).to_be_enabled(timeout=60_000)
    box.fill(question)
    box.press("Enter")
    expect(page.get_by_text("Prompt map")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    wait_for_script(page)


def wait_for_script(page: Page, timeout_ms: int = 60_000) -> None:
    """Until the script run has finished drawing (Streamlit shows a Stop button while it runs)."""
    expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=timeout_ms)


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
