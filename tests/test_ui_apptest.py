"""Fast checks of the Streamlit app, headless through `AppTest` (no browser, no generator), and of the
small pure helpers the page is built from: safe upload names, citation links, evidence marks, exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app.answer import Answer, Evidence, ModelInfo, Passage, Quote
from app.api import LongDocQA
from ingest.layout import Box
from ui.answer_view import highlight, link_citations
from ui.charts import prompt_map, zone_bounds
from ui.export import answers_csv, answers_json
from ui.page_view import page_html
from ui.uploads import UploadRejected, safe_filename, save_upload

APP = Path(__file__).resolve().parents[1] / "ui" / "streamlit_app.py"
CLAUSE = "This Agreement shall be governed by the laws of the State of Texas."
DOC_TEXT = "1. Parties. Acme and Comware.\n\n13. Governing Law. " + CLAUSE + " Venue is Bexar County.\n"


def passage(rank: int, start: int, end: int, token_start: int, zone: str, score: float) -> Passage:
    return Passage(
        rank=rank, score=score, doc="msa.txt", doc_id="abc", char_start=start, char_end=end,
        text=DOC_TEXT[start:end], section=f"section {rank}", prompt_index=rank - 1,
        prompt_token_start=token_start, prompt_token_end=token_start + 20, prompt_zone=zone,
    )  # fmt: skip


@pytest.fixture
def answer() -> Answer:
    clause_at = DOC_TEXT.index(CLAUSE)
    return Answer(
        question="Which law governs?",
        answer="Texas law governs [1], see also [2] and [9].",
        model=ModelInfo("SmolLM2-135M-Instruct", {"rope_type": "yarn", "factor": 4.0}, 32768,
                        kv_cache_dtype="bfloat16", decode_weights="int4+int8"),
        passages=[passage(1, 31, len(DOC_TEXT), 40, "start", 0.81), passage(2, 0, 31, 90, "end", 0.42)],
        evidence=[Evidence(doc="msa.txt", char_start=clause_at, char_end=clause_at + len(CLAUSE), text=CLAUSE)],
        prompt_tokens=140,
        timings={"total_s": 3.2},
    )


@pytest.fixture
def app_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app on an empty index in tmp_path. The shared LongDocQA is cached per process, so it is
    dropped first: each test gets its own index."""
    monkeypatch.setenv("LONGDOC_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st.cache_resource.clear()
    return AppTest.from_file(str(APP), default_timeout=120)


def test_empty_library_says_to_add_documents_and_disables_questions(app_test: AppTest) -> None:
    at = app_test.run()
    assert not at.exception
    assert any("library is empty" in info.value for info in at.info)
    assert at.chat_input[0].disabled


def test_an_answer_in_history_renders_passages_maps_and_downloads(app_test: AppTest, answer: Answer) -> None:
    app_test.session_state["history"] = [answer]
    at = app_test.run()
    assert not at.exception
    markdown = " ".join(m.value for m in at.markdown)
    assert "[[1](#a0-p1)]" in markdown and "[9]" in markdown  # a cited passage is linked; an unknown rank is not
    assert CLAUSE in markdown  # the evidence sentence
    assert "**Prompt map**" in markdown
    assert list(at.dataframe[0].value["document"]) == ["msa.txt", "msa.txt"]  # the passages table
    assert [e.label.split(" ")[0] for e in at.expander] == ["[1]", "[2]"]
    captions = " ".join(c.value for c in at.caption)
    assert "32,768" in captions  # effective window from the answer's model
    assert "Decoding: int4+int8 weights, bfloat16 KV cache, sdpa attention" in captions


def pdf_answer(qa: LongDocQA, pdf: Path) -> Answer:
    """An answer about the PDF `pdf` ingested into `qa`: its passages and its quote placed on their page."""
    from app.quote import on_page

    passages = qa.retrieve("Which law governs?", doc=pdf.name, top_k=2)
    holder = passages[0]
    start = holder.char_start + holder.text.index("laws")
    quote = on_page(Quote(pdf.name, start, start + 4, "laws"), holder)
    return Answer(question="Which law governs?", answer="Texas.", passages=passages, quote=quote)


def test_a_pdf_answer_shows_its_quote_on_its_page(app_test: AppTest, tmp_path: Path) -> None:
    from tests.test_loaders import write_pdf

    pdf = write_pdf(tmp_path / "msa.pdf", [["1. Services. Acme provides the services."], [CLAUSE, "Venue: Bexar."]])
    with LongDocQA(index_dir=tmp_path / "index") as qa:
        qa.ingest(pdf)
        answer = pdf_answer(qa, pdf)
    assert answer.quote.page == 2
    app_test.session_state["history"] = [answer]
    at = app_test.run()
    assert not at.exception
    assert any(m.value.startswith("**Page 2** of msa.pdf") for m in at.markdown)
    assert [b.label for b in at.button if b.label.startswith("Open page")] == ["Open page 2"]

    pdf.unlink()  # the file gone (a library read on another machine): the page is named, not drawn
    st.cache_data.clear()
    at = app_test.run()
    assert not at.exception
    assert any("page 2 of msa.pdf; the page cannot be shown: msa.pdf: its PDF is not at" in c.value for c in at.caption)


def test_quote_marks_sit_on_the_page_in_percent_of_its_size() -> None:
    on_2 = Box(2, 61.2, 79.2, 306.0, 91.2, 612.0, 792.0)
    quote = Quote("msa.pdf", 10, 20, "the laws", page=2, boxes=[on_2, Box(3, 0, 0, 10, 10, 612.0, 792.0)])
    below = Box(2, 61.2, 91.2, 306, 103.2, 612, 792)
    passage = Passage(1, 0.8, "msa.pdf", "abc", 0, 40, "x" * 40, page=2, boxes=[on_2, below])
    shown = page_html("iVBORw0KGgo=", Answer("q", passages=[passage], quote=quote), "640px")
    assert shown.count('class="mark quote"') == 1 and shown.count('class="mark passage"') == 2
    assert ('class="mark quote" style="position: absolute; left: 10.000%; top: 10.000%; width: 40.000%; '
            'height: 1.515%') in shown
    assert shown.index('class="mark passage"') < shown.index('class="mark quote"')  # the quote's drawn on top


def test_abstained_answer_says_no_passage_was_relevant(app_test: AppTest, answer: Answer) -> None:
    answer.abstained, answer.passages, answer.evidence, answer.prompt_tokens = True, [], [], 0
    answer.relevance = {"score": 0.21, "passage": 0.18, "sentence": 0.25, "coverage": 0.2}
    app_test.session_state["history"] = [answer]
    at = app_test.run()
    assert not at.exception
    assert any("relevant enough" in info.value and "relevance 0.21" in info.value and "20% of the question's words"
               in info.value for info in at.info)


def test_failed_question_shows_its_error_not_a_traceback(app_test: AppTest) -> None:
    app_test.session_state["history"] = [Answer(question="q", error="no ingested document named 'x.pdf'")]
    at = app_test.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["no ingested document named 'x.pdf'"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("C:\\Users\\me\\msa.pdf", "msa.pdf"),
        ("<b>x</b>.md", "b_.md"),  # "/" is a separator even inside a tag
        ("Foo, Inc. (2).docx", "Foo, Inc. (2).docx"),
        ("...", "upload"),
    ],
)
def test_upload_names_keep_only_a_safe_base_name(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_uploads_are_stored_by_content_hash_and_limited_in_size(tmp_path: Path) -> None:
    first = save_upload("../msa.txt", b"same bytes", tmp_path, max_bytes=100)
    again = save_upload("msa.txt", b"same bytes", tmp_path, max_bytes=100)
    other = save_upload("msa.txt", b"other bytes", tmp_path, max_bytes=100)
    assert first == again != other and first.name == other.name == "msa.txt"
    assert first.parent.parent == tmp_path and first.read_bytes() == b"same bytes"
    with pytest.raises(UploadRejected, match="limit"):
        save_upload("big.txt", b"x" * 101, tmp_path, max_bytes=100)
    with pytest.raises(UploadRejected, match="unsupported"):
        save_upload("tool.exe", b"MZ", tmp_path, max_bytes=100)


def test_citations_link_to_passage_rows_of_their_own_answer() -> None:
    assert link_citations("See [1, 2] and [7].", {1, 2}, "a3") == "See [[1](#a3-p1), [2](#a3-p2)] and [7]."


def test_evidence_is_marked_inside_its_passage_by_offsets(answer: Answer) -> None:
    marked = highlight(answer.passages[0], answer.evidence)
    assert f"<mark>{CLAUSE}</mark>" in marked
    assert "<mark>" not in highlight(answer.passages[1], answer.evidence)


def test_prompt_zones_split_the_passage_region_in_thirds(answer: Answer) -> None:
    assert zone_bounds(answer.passages) == [("start", 40, 63), ("middle", 63, 87), ("end", 87, 110)]
    assert prompt_map(Answer(question="q")) is None


def test_downloads_hold_every_answer(answer: Answer) -> None:
    assert json.loads(answers_json([answer, answer]))[0]["passages"][0]["prompt_zone"] == "start"
    csv_lines = answers_csv([answer]).splitlines()
    assert csv_lines[0].startswith("question,answer") and "[1] msa.txt (start)" in csv_lines[1]


def test_the_quote_is_marked_inside_the_text_around_it(answer: Answer) -> None:
    from app.answer import Quote
    from ui.answer_view import quote_in_context

    at = DOC_TEXT.index("the State of Texas")
    answer.quote = Quote(doc="msa.txt", char_start=at, char_end=at + len("the State of Texas"), text="the State of Texas")
    shown = quote_in_context(answer)
    assert '<mark class="quote"' in shown and ">the State of Texas</mark>" in shown
    assert "governed by the laws of " in shown.split("<mark")[0]  # the words before it, from its passage
    answer.quote = Quote(doc="other.txt", char_start=at, char_end=at + 5, text="x")
    assert quote_in_context(answer) is None  # a quote no passage holds is not drawn


def test_an_unsupported_sentence_is_underlined_with_its_reason(answer: Answer) -> None:
    from app.answer import SentenceSupport, Support
    from ui.answer_view import mark_unsupported

    answer.answer = "Texas law governs [1]. The fee is <$5 million>."
    answer.support = Support("partly supported", [
        SentenceSupport("Texas law governs [1].", True, doc="msa.txt", char_start=0, char_end=5),
        SentenceSupport("The fee is <$5 million>.", False, reason="not in the passages: 5"),
    ])
    marked = mark_unsupported(answer)
    assert marked.startswith("Texas law governs [1]. <span class=\"unsupported\"")
    assert 'title="not in the passages: 5"' in marked and "&lt;$5 million&gt;.</span>" in marked


def test_a_sections_answer_shows_every_section_read_and_what_it_searched(app_test: AppTest, answer: Answer) -> None:
    from app.answer import Note, Search

    answer.mode = "sections"
    answer.question = "List every obligation."
    answer.searched = Search("List every obligation.", "msa.txt", "the document in focus")
    answer.notes = [
        Note(section=1, doc="msa.txt", char_start=0, char_end=31, text="Acme and Comware are the parties.", used=True,
             sources=[2, 3], relevance=0.41),
        Note(section=2, doc="msa.txt", char_start=31, char_end=40, text="Comware shall pay the fees.", used=True,
             sources=[4], relevance=0.38, reason="the model found nothing here; the note quotes the passages"),
        Note(section=3, doc="msa.txt", char_start=40, char_end=len(DOC_TEXT), text="", relevance=0.2,
             reason="relevance 0.20 is below 0.34: not read by the model"),
    ]
    app_test.session_state["history"] = [answer]
    at = app_test.run()
    assert not at.exception
    assert "Sections read: 3, 2 noted into the answer" in [e.label for e in at.expander]
    markdown = " ".join(m.value for m in at.markdown)
    assert "where each section's note sat in the combining prompt" in markdown
    assert "Acme and Comware are the parties." in markdown and "not read by the model" in markdown
    assert "note citing [2], [3]" in markdown
    assert ":orange[the model found nothing here; the note quotes the passages]" in markdown
    assert "Searched **msa.txt** (the document in focus)" in [c.value for c in at.caption]


def test_the_document_in_focus_is_shown_and_one_click_searches_the_whole_library(
        app_test: AppTest, tmp_path: Path) -> None:
    from app import LongDocQA

    (tmp_path / "msa.txt").write_text(DOC_TEXT, encoding="utf-8")
    LongDocQA(index_dir=tmp_path / "index").ingest([tmp_path / "msa.txt"])
    at = app_test.run()
    assert any("search **the whole library**" in c.value for c in at.caption)
    at.session_state["conversation"].focus_on("msa.txt")  # as an upload of one file does
    at.run()
    assert any("search **msa.txt**" in c.value for c in at.caption)
    assert at.sidebar.selectbox(key="focus_choice").value == "msa.txt"
    at.button(key="widen").click().run()
    assert not at.exception
    assert at.session_state["conversation"].focus is None
    assert any("search **the whole library**" in c.value for c in at.caption)
    assert at.sidebar.selectbox(key="focus_choice").value == ""  # shown as "All documents"
    at.sidebar.selectbox(key="focus_choice").select("msa.txt").run()  # choosing a document puts it in focus
    assert at.session_state["conversation"].focus == "msa.txt"


@pytest.mark.parametrize("setting, shown", [("0", False), ("2", True)])
def test_the_passages_context_toggle_starts_from_the_setting(app_test: AppTest, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, setting: str,
                                                            shown: bool) -> None:
    from app import LongDocQA

    (tmp_path / "msa.txt").write_text(DOC_TEXT, encoding="utf-8")
    LongDocQA(index_dir=tmp_path / "index").ingest([tmp_path / "msa.txt"])
    monkeypatch.setenv("LONGDOC_CONTEXT_CHUNKS", setting)
    at = app_test.run()
    assert not at.exception
    [toggle] = [t for t in at.sidebar.toggle if t.label == "Passages with the text around them"]
    assert toggle.value is shown


def test_a_document_that_cannot_be_read_is_marked_in_the_library_and_the_others_listed(
        app_test: AppTest, tmp_path: Path) -> None:
    for name in ("msa.txt", "nda.txt"):
        (tmp_path / name).write_text(DOC_TEXT.replace("Acme", name), encoding="utf-8")
    LongDocQA(index_dir=tmp_path / "index").ingest([tmp_path / "msa.txt", tmp_path / "nda.txt"])
    sorted((tmp_path / "index" / "segments").glob("*"))[0].joinpath("vectors.npy").unlink()  # the first: msa.txt
    at = app_test.run()
    assert not at.exception
    lines = [m.value for m in at.sidebar.markdown]
    assert any(line.startswith("**msa.txt**") and "cannot be read (vectors.npy is missing)" in line for line in lines)
    assert any(line.startswith("**nda.txt**") and "chunks" in line for line in lines)
