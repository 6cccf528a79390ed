"""One source of truth: the choices a setting offers are the ones its part implements, and the defaults the
settings give are the ones each part would use on its own.

`app.settings` takes its choices from the registries, except the chunkers': `ingest.chunkers` imports
llama-index, which `longdoc --help`, `docs` and `remove` must start without (tests/test_cold_start.py), so that
tuple is written out and this test is what keeps it true.
"""

from __future__ import annotations

import dataclasses

import pytest

from app import settings as s
from app.llm.rope import ROPE_SCALINGS
from app.reorder import REORDERERS
from index.retrieval import RETRIEVAL_METHODS
from ingest import chunkers
from ingest.chunkers.fixed import FixedConfig
from ingest.chunkers.semantic import SemanticConfig


def test_every_choice_is_one_its_registry_implements():
    assert set(s.REORDER_CHOICES) == set(REORDERERS)
    assert set(s.RETRIEVERS) == set(RETRIEVAL_METHODS)
    assert set(s.ROPE_SCALINGS) == set(ROPE_SCALINGS)
    assert set(s.CHUNKERS) == set(chunkers.CHUNKERS)


def test_chunking_defaults_are_the_chunkers_own():
    defaults = s.Settings(index_dir="unused", cache_dir="unused")
    assert defaults.chunk_min_tokens == SemanticConfig.min_tokens
    assert defaults.semantic_breakpoint_percentile == SemanticConfig.breakpoint_percentile
    assert (defaults.fixed_chunk_tokens, defaults.fixed_chunk_overlap) == (FixedConfig.window, FixedConfig.overlap)


@pytest.mark.parametrize("name", sorted(s.CHOICES))
def test_a_choice_setting_takes_its_choices_and_refuses_others(name):
    allowed = s.CHOICES[name]
    assert name in {f.name for f in dataclasses.fields(s.Settings)}
    assert getattr(s.Settings(index_dir="unused", cache_dir="unused"), name) in allowed  # the default is offered
    for value in allowed:
        s.Settings(index_dir="unused", cache_dir="unused", **{name: value})
    with pytest.raises(s.SettingsError, match=rf"^{name}='no-such-choice' is not one of {', '.join(allowed)}$"):
        s.Settings(index_dir="unused", cache_dir="unused", **{name: "no-such-choice"})


def test_the_model_runtime_is_told_only_the_generators_settings():
    """app.llm takes a GeneratorConfig, not Settings: loading its modules imports no settings, and every field of
    the config carries the setting of its name (or of the name its comment gives) unchanged."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, app.llm.generator, app.llm.server_generator, app.llm.perplexity; "
                               "print('app.settings' in sys.modules)"], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
    renamed = {"source": "generator", "adapter": "generator_adapter", "served_model": "generator_model",
               "tokenizer": "generator_tokenizer", "timeout_s": "generator_timeout_s"}
    settings = s.Settings.load(generator="http://127.0.0.1:1/v1", rope_factor=2.0, temperature=0.7,
                               generator_model="m", generator_tokenizer="t", api_key="sk-secret", max_new_tokens=7)
    config = settings.generator_config()
    for f in dataclasses.fields(config):
        assert getattr(config, f.name) == getattr(settings, renamed.get(f.name, f.name)), f.name
    assert config.is_server and "sk-secret" not in repr(config)


def test_every_number_setting_has_its_bounds_and_they_are_enforced():
    numbers = {f.name for f in dataclasses.fields(s.Settings) if f.type in ("int", "float")}
    assert numbers == set(s.BOUNDS)
    defaults = s.Settings.load(config_file=None, env={})
    for name, bound in s.BOUNDS.items():
        assert bound.admits(getattr(defaults, name)), name  # every default within its own bounds
        if bound.low is not None:
            outside = bound.low if bound.low_open else bound.low - 1
            with pytest.raises(s.SettingsError, match=f"{name} must be"):
                defaults.replace(**{name: outside}).validate()


def test_every_setting_is_described_and_longdoc_settings_prints_it(monkeypatch):
    from typer.testing import CliRunner

    from app.cli import app

    described = s.Settings.described()
    assert list(described) == [f.name for f in dataclasses.fields(s.Settings)]
    assert all(len(text) > 10 for text, _, _ in described.values()), "a setting without a description"
    monkeypatch.setenv("LONGDOC_TOP_K", "8")
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["settings", "top_k", "rope_scaling"])
    assert result.exit_code == 0, result.output
    assert "passages retrieved for a question" in result.output and "(default 5)" in result.output
    assert "one of yarn, linear, dynamic, none" in result.output and "min_relevance" not in result.output
    refused = CliRunner().invoke(app, ["settings", "top-k"])
    assert refused.exit_code == 1 and "unknown setting(s) top-k" in refused.output
