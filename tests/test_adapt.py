"""`longdoc adapt`: a few LoRA steps on two real contracts lower the loss on what was trained, write an adapter
that a later run continues, and the generator set to that adapter answers with changed weights, in its forward
and in its quantized decode step, and names it. Steps run at 512 tokens, so the module takes about a minute."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from app import LongDocQA
from app.adapt import ADAPTER_INFO, AdaptConfig, build_corpus, read_documents, sequence_at
from app.cli import app
from app.errors import LongDocError
from app.evals.cli import eval_app
from app.llm.generator import Generator
from app.llm.perplexity import token_nll
from app.settings import Settings, SettingsError
from conftest import FIXTURES

pytestmark = pytest.mark.slow  # trains and loads the generator

CONTRACTS = FIXTURES / "cuad_dev" / "contracts"
TWO = [CONTRACTS / "ABILITYINC_06_15_2020-EX-4.25-SERVICES AGREEMENT.txt",
       CONTRACTS / "OPTIMIZEDTRANSPORTATIONMANAGEMENT,INC_07_26_2000-EX-6.6-DISTRIBUTOR AGREEMENT.txt"]
# One contract trained on, one held out; a high learning rate so that two steps move the weights measurably.
RUN = dict(seq_len=512, learning_rate=2e-3, held_out=0.5, eval_sequences=1, checkpoint_every=1)
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A step through the Python API, then one more by `longdoc adapt` on the same --out, which continues."""
    out = tmp_path_factory.mktemp("adapter")
    first = LongDocQA(index_dir=tmp_path_factory.mktemp("index")).adapt(TWO, out, steps=1, **RUN)
    after_one = (out / "adapter_model.safetensors").read_bytes()
    env = {"LONGDOC_ADAPT_EVAL_SEQUENCES": "1", "LONGDOC_ADAPT_CHECKPOINT_EVERY": "1"}
    result = runner.invoke(app, ["adapt", *map(str, TWO), "--out", str(out), "--seq-len", "512", "--steps", "2",
                                 "--held-out", "0.5", "--learning-rate", "2e-3"], env=env)
    assert result.exit_code == 0, result.output
    resumed = json.loads((out / "adapt_report.json").read_text())
    return out, first, resumed, after_one, result.output


@pytest.fixture(scope="module")
def base():
    return Generator.load(Settings.load(kv_cache_dtype="float32", quantized_decode=False).generator_config())


@pytest.fixture(scope="module")
def adapted(trained):
    return Generator.load(Settings.load(kv_cache_dtype="float32", generator_adapter=str(trained[0])).generator_config())


def test_documents_are_split_whole_and_the_adapter_is_written(trained):
    out, first, resumed, _, _ = trained
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    info = json.loads((out / ADAPTER_INFO).read_text())
    assert len(info["train_documents"]) == len(info["held_out_documents"]) == 1
    assert sorted(info["train_documents"] + info["held_out_documents"]) == sorted(str(p.resolve()) for p in TWO)
    assert info["seq_len"] == 512 and info["rope_scaling"] == "yarn" and info["steps"] == 2


def test_a_second_run_on_the_same_folder_continues_from_its_checkpoint(trained):
    out, first, resumed, after_one, output = trained
    assert len(first.losses) == 1 and first.resumed_from == 0
    assert resumed["resumed_from"] == 1 and resumed["steps"] == 2
    assert resumed["losses"][:1] == first.losses and len(resumed["losses"]) == 2
    assert (out / "adapter_model.safetensors").read_bytes() != after_one  # step 2 changed the weights
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    assert "2 steps at 512 tokens" in output and "Held-out perplexity" in output


def test_training_lowers_the_loss_on_the_sequences_trained_on(trained, base, adapted):
    out, _, resumed, _, _ = trained
    config = AdaptConfig.from_settings(Settings.load(), steps=2, **RUN)
    corpus = build_corpus(read_documents(TWO), base.tokenizer, config)
    seen = [sequence_at(corpus.train, step) for step in range(2)]
    before = torch.cat([token_nll(base, ids) for ids in seen]).mean().item()
    after = torch.cat([token_nll(adapted, ids) for ids in seen]).mean().item()
    assert after < before - 0.1, (before, after)


def test_held_out_figures_are_the_base_model_and_the_saved_adapter(trained, base, adapted):
    """`before` is the model with the adapter off, `after` the adapter as saved and merged by the generator."""
    out, _, resumed, _, _ = trained
    config = AdaptConfig.from_settings(Settings.load(), steps=2, **RUN)
    held = build_corpus(read_documents(TWO), base.tokenizer, config).held_out
    assert len(held) == 1 and len(held[0]) == 512
    assert math.isclose(resumed["ppl_before"], token_nll(base, held[0]).mean().exp().item(), rel_tol=1e-3)
    assert math.isclose(resumed["ppl_after"], token_nll(adapted, held[0]).mean().exp().item(), rel_tol=1e-3)
    assert resumed["ppl_after"] != resumed["ppl_before"]
    assert [s["start"] for s in resumed["segments"]] == list(range(0, 512, 64))


def test_the_generator_merges_the_adapter_names_it_and_decodes_with_it(trained, base, adapted):
    out = trained[0]
    assert adapted.info.adapter == str(out.resolve()) and base.info.adapter is None
    q_proj = [g.model.model.layers[0].self_attn.q_proj.weight for g in (base, adapted)]
    assert not torch.equal(*q_proj)  # merged: a plain Linear whose weight carries the update
    assert adapted.decode_step is not None  # the quantized step, built from the merged weights
    ids = base.tokenizer("This Agreement shall be governed by the laws of the State of", add_special_tokens=False)[
        "input_ids"]
    with torch.inference_mode():
        forward = {name: gen.model(input_ids=torch.tensor([ids])).logits[0, -1]
                   for name, gen in (("base", base), ("adapted", adapted))}
    cache = adapted._new_cache()
    adapted._forward(ids[:-1], cache, show_progress=False)
    step = adapted.step(ids[-1], cache)[0]
    assert (forward["adapted"] - forward["base"]).abs().mean() > 0.05  # the adapter changes the logits
    # the quantized step reads the merged weights: it lands nearer the adapted forward than the base one
    assert (step - forward["adapted"]).abs().mean() < (step - forward["base"]).abs().mean()
    answer = adapted.generate(adapted.chat_ids("Answer briefly.", "Name a colour."), max_new_tokens=8)
    assert answer.completion_tokens > 0


def test_ppl_with_adapter_scores_the_held_out_documents_before_and_after(trained, tmp_path):
    out = trained[0]
    result = runner.invoke(app, ["ppl", "--adapter", str(out), "--lengths", "512", "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert "yarn+adapter" in result.output and "\n│ yarn " in result.output
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_niah_with_adapter_asks_the_same_needles_before_and_after(trained, tmp_path):
    out = trained[0]
    result = runner.invoke(eval_app, ["niah", "--adapter", str(out), "--lengths", "512", "--depths", "50",
                                      "--modes", "full_document", "--out", str(tmp_path)],
                           env={"LONGDOC_QUANTIZED_DECODE": "0"})  # its set-up costs more than 48 tokens save
    assert result.exit_code == 0, result.output
    before, after = (json.loads((tmp_path / d / "niah.json").read_text()) for d in ("before", "after"))
    assert before["model"]["adapter"] is None and after["model"]["adapter"] == str(out.resolve())
    assert [c["code"] for c in before["cells"]] == [c["code"] for c in after["cells"]]
    assert [c["variant"] for c in after["cells"]] == ["yarn"]
    assert before["haystack"] == after["haystack"] == json.loads((out / ADAPTER_INFO).read_text())["held_out_documents"]


def test_bad_adapt_input_is_one_line_and_no_traceback(tmp_path):
    missing = runner.invoke(app, ["adapt", str(tmp_path / "nothing"), "--out", str(tmp_path / "a")])
    assert missing.exit_code == 1 and "no readable documents" in missing.output
    assert "Traceback" not in missing.output
    too_long = runner.invoke(app, ["adapt", str(TWO[1]), "--out", str(tmp_path / "a"), "--seq-len", "64k"])
    assert too_long.exit_code == 1 and "raise --rope-factor" in too_long.output
    not_adapter = runner.invoke(app, ["ppl", "--adapter", str(tmp_path)])
    assert not_adapter.exit_code == 1 and "not a LoRA adapter" in not_adapter.output
    with pytest.raises(LongDocError, match="not a LoRA adapter"):
        Generator.load(Settings.load(generator_adapter=str(tmp_path)).generator_config())
    with pytest.raises(SettingsError, match="generator_adapter"):
        Settings.load(generator="http://127.0.0.1:9/v1", generator_adapter=str(tmp_path))
