"""Answering through a real OpenAI-compatible server: llama.cpp's own server (xllamacpp) serving the packaged
SmolLM2 GGUF with YaRN x4 over its native 8,192 tokens, on 127.0.0.1, started here and stopped by its PID."""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from app import LongDocQA
from app.api import load_generator
from app.batch import Question
from app.errors import PromptTooLong
from app.llm.generator import embedded_gguf
from app.llm.llama_server import ServerConfig, start_server, stop_server
from app.llm.server_generator import ServerError, ServerGenerator, char_offsets
from app.prompt import SYSTEM_PROMPT, passage_header, render_user_message
from app.settings import Settings

pytestmark = pytest.mark.slow  # each test loads the generator: in a llama.cpp server, or here in process

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "sample_docs" / "ediets_co-branding_agreement.txt"
MEETING = ROOT / "sample_docs" / "ami_remote_control_design_meeting.txt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path: Path, **options) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = start_server(ServerConfig(embedded_gguf(), port, **options), tmp_path / f"llama-server-{port}.log")
    return proc, f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The YaRN x4 server with four slots sharing one 32,768-token KV buffer."""
    proc, url = serve(tmp_path_factory.mktemp("server"), parallel=4)
    yield url
    stop_server(proc)
    assert proc.returncode is not None


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = tmp_path_factory.mktemp("index")
    LongDocQA(index_dir=path).ingest([CONTRACT, MEETING])
    return path


@pytest.fixture(scope="module")
def qa(server, index):
    return LongDocQA(index_dir=index, generator=server)


def server_tokens(url: str, text: str) -> list[dict]:
    """The server's own tokens of `text`, with their pieces, straight from its /tokenize."""
    root = url.removesuffix("/v1")
    return httpx.post(f"{root}/tokenize", json={"content": text, "with_pieces": True}).json()["tokens"]


def piece_bytes(token: dict) -> bytes:
    piece = token["piece"]
    return bytes(piece) if isinstance(piece, list) else piece.encode("utf-8")


def test_ask_json_reports_the_servers_window_and_positions_that_match_its_tokenizer(server, index):
    env = {**os.environ, "LONGDOC_GENERATOR": server}
    done = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "ask", "--json", "--index",
                           str(index), "--doc", CONTRACT.name, "When does the co-branding agreement expire?"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    model = answer["model"]
    assert (model["backend"], model["context_window"], model["tokenizer"]) == ("openai", 32768, "server")
    assert model["server"] == server and model["rope_scaling"] is None  # llama.cpp does not report its scaling
    assert answer["error"] is None and answer["answer"]

    # The prompt the engine sent, rendered again, tokenized by the server itself: each passage's token range
    # spells exactly its text, and the prompt has as many tokens as the answer says.
    ordered = sorted(answer["passages"], key=lambda p: p["prompt_index"])
    from app.answer import Passage

    blocks = [(passage_header(Passage(**p)), p["text"]) for p in ordered]
    user, _ = render_user_message(answer["question"], blocks)
    root = server.removesuffix("/v1")
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    prompt = httpx.post(f"{root}/apply-template", json={"messages": messages}).json()["prompt"]
    tokens = server_tokens(server, prompt)
    assert len(tokens) == answer["prompt_tokens"]
    for p in ordered:
        spelled = b"".join(piece_bytes(t) for t in tokens[p["prompt_token_start"]:p["prompt_token_end"]])
        assert spelled.decode("utf-8").strip() == p["text"].strip()
        before = piece_bytes(tokens[p["prompt_token_start"] - 1]).decode("utf-8", "replace")
        assert before.endswith("\n")  # the token before a passage is its fence line's newline


def test_the_server_reads_exactly_the_prompt_tokens_sent(qa):
    answer = qa.ask("Which law governs the agreement?", doc=CONTRACT.name)
    gen = qa.engine.generator
    assert isinstance(gen, ServerGenerator)
    assert gen.last_stats.prompt_tokens == answer.prompt_tokens > 500
    assert answer.completion_tokens > 0 and answer.timings["prefill_s"] > 0


def test_char_offsets_cover_multibyte_characters_split_across_tokens(server):
    text = "Paid in ¥ and 日本円 — “quoted”, café.\n\n<passage [1]>"
    tokens = server_tokens(server, text)
    offsets = char_offsets(text, [t["piece"] for t in tokens])
    assert any(isinstance(t["piece"], list) for t in tokens)  # the case that needs bytes: part of a character
    assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
    for (s, e), t in zip(offsets, tokens):
        assert s < e and piece_bytes(t).decode("utf-8", "ignore") in text[s:e]


def test_stream_yields_pieces_while_the_server_is_still_generating(qa, server):
    root = server.removesuffix("/v1")
    pieces, busy_at_first_piece = [], None
    for event in qa.stream("Who are the parties to the agreement and what do they do?", doc=CONTRACT.name):
        if isinstance(event, str):
            if not pieces:
                slots = httpx.get(f"{root}/slots").json()
                busy_at_first_piece = any(s["is_processing"] for s in slots)
            pieces.append(event)
        else:
            answer = event
    assert busy_at_first_piece  # the first piece came while the reply was still being written
    assert len(pieces) > 3 and "".join(pieces).strip() == answer.answer


QUESTIONS = ["Who are the parties?", "When does it expire?", "Which law governs?", "What are the fees?",
             "Can it be assigned?", "What does eDiets provide?", "What is the term?", "Who pays the costs?"]


def most_at_once(qa: LongDocQA, questions: list[str]) -> int:
    """Ask each question from its own thread; how many were inside the generator's stream at the same moment."""
    gen = qa.engine.generator
    inside, most = [0], [0]
    guard = threading.Lock()
    real_stream = gen.stream

    def counting_stream(*args, **kwargs):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            yield from real_stream(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    answers: list = [None] * len(questions)
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, qa.ask(questions[i], doc=CONTRACT.name)))
               for i in range(len(questions))]
    gen.stream = counting_stream  # observes the real generator; every question still runs on it
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        del gen.stream
    assert all(a is not None and a.error is None and a.answer for a in answers)
    return most[0]


def test_questions_from_several_threads_generate_at_once_through_a_server(qa):
    assert 2 <= most_at_once(qa, QUESTIONS) <= qa.settings.generator_concurrency


def test_the_in_process_model_answers_one_question_at_a_time(index):
    qa = LongDocQA(index_dir=index)
    assert qa.model_info().backend == "local"
    assert most_at_once(qa, QUESTIONS[:3]) == 1


def test_budget_is_the_servers_window_and_a_prompt_over_it_is_refused_in_one_line(tmp_path, index):
    proc, url = serve(tmp_path, rope_factor=1.0, native_window=1024)
    try:
        small = LongDocQA(index_dir=index, generator=url, top_k=12)
        assert small.model_info().context_window == 1024
        answer = small.ask("What does the agreement say about termination?", doc=CONTRACT.name)
        assert answer.dropped and answer.prompt_tokens <= 1024 - small.settings.max_new_tokens
        with pytest.raises(PromptTooLong, match="window of 1024 tokens leaves 896"):
            small.ask("Summarise the agreement.", doc=CONTRACT.name, mode="full_document")
        with pytest.raises(PromptTooLong, match="server at .* reports a window of 1024 tokens"):
            small.engine.generator.generate(list(range(1000)))
    finally:
        stop_server(proc)


def test_errors_are_one_line_each(tmp_path, server, index):
    def connect(**overrides):
        with pytest.raises(ServerError) as caught:
            ServerGenerator.connect(Settings.load(index_dir=index, **overrides).generator_config())
        message = str(caught.value)
        assert "\n" not in message and "Traceback" not in message
        return message

    assert "cannot reach" in connect(generator=f"http://127.0.0.1:{free_port()}/v1")
    assert "lists no models" in connect(generator=server.removesuffix("/v1") + "/not-an-api/v1")
    assert "does not serve 'gpt-9'" in connect(generator=server, generator_model="gpt-9")

    proc, url = serve(tmp_path, api_key="s3cret")
    try:
        assert "LONGDOC_API_KEY" in connect(generator=url)
        assert "LONGDOC_API_KEY" in connect(generator=url, api_key="wrong")
        keyed = LongDocQA(index_dir=index, generator=url, api_key="s3cret")
        assert keyed.ask("Which law governs?", doc=CONTRACT.name).answer
        # a whole meeting takes the server seconds to read; its own server, so the abandoned reads slow no other test
        slow = LongDocQA(index_dir=index, generator=url, api_key="s3cret", generator_timeout_s=0.3)
        with pytest.raises(ServerError, match=r"did not answer within 0\.3 s"):
            slow.ask("What did they decide about the remote control design?", doc=MEETING.name, mode="full_document")
    finally:
        stop_server(proc)


def test_a_reply_cut_off_by_the_server_dying_is_an_error_not_an_answer(tmp_path, index):
    proc, url = serve(tmp_path)
    try:
        gen = load_generator(Settings.load(index_dir=index, generator=url))
        ids = gen.chat_ids("You write long stories.", "Write a very long story about a lighthouse keeper.")
        stream = gen.stream(ids, max_new_tokens=2000)
        first = next(stream)
        os.kill(proc.pid, 9)
        with pytest.raises(ServerError, match="cut off"):
            for _ in stream:
                pass
        assert first
    finally:
        stop_server(proc)


def test_a_batch_goes_on_when_the_server_goes_away_and_marks_the_failed_questions(tmp_path, index):
    proc, url = serve(tmp_path)
    try:
        qa = LongDocQA(index_dir=index, generator=url)
        rows = [Question(id=f"q{i}", question=q, doc=CONTRACT.name)
                for i, q in enumerate(["Which law governs?", "Who are the parties?", "When does it expire?"])]
        answers = []
        for answer in qa.ask_many(rows):
            answers.append(answer)
            if len(answers) == 1:
                stop_server(proc)
    finally:
        stop_server(proc)
    assert answers[0].error is None and answers[0].answer
    assert [a.id for a in answers] == ["q0", "q1", "q2"]
    assert all(a.error and "cannot reach" in a.error and not a.answer for a in answers[1:])


def test_the_page_answers_through_the_server_and_says_whose_window_it_is(server, index, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LONGDOC_INDEX_DIR", str(index))
    monkeypatch.setenv("LONGDOC_GENERATOR", server)
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "ui" / "streamlit_app.py"), default_timeout=180).run()
    at.chat_input[0].set_value("Which law governs the co-branding agreement?").run()
    assert not at.exception
    history = at.session_state["history"]
    assert len(history) == 1 and history[0].error is None and history[0].answer
    assert history[0].model.backend == "openai"
    captions = " ".join(c.value for c in at.caption)
    assert "Window (the server's): **32,768 tokens**" in captions and f"Server: {server}" in captions
    st.cache_resource.clear()
