"""One settings object: defaults, then longdoc.toml, then LONGDOC_* variables, then explicit overrides."""

from pathlib import Path

import pytest

from app.settings import Settings, SettingsError


def test_later_sources_override_earlier(tmp_path):
    cfg = tmp_path / "longdoc.toml"
    cfg.write_text('top_k = 7\nreorder = "reverse_rank"\nindex_dir = "~/idx"\n', encoding="utf-8")
    s = Settings.load(config_file=cfg, env={"LONGDOC_TOP_K": "9"})
    assert s.top_k == 9 and s.reorder == "reverse_rank"
    assert s.index_dir == Path.home() / "idx"
    assert Settings.load(config_file=cfg, env={"LONGDOC_TOP_K": "9"}, top_k=3).top_k == 3


def test_none_overrides_are_ignored():
    assert Settings.load(env={}, top_k=None).top_k == Settings().top_k


def test_unknown_setting_lists_the_valid_ones(tmp_path):
    with pytest.raises(SettingsError, match="unknown setting.*top_kk.*valid:.*top_k"):
        Settings.load(env={}, top_kk=3)
    cfg = tmp_path / "longdoc.toml"
    cfg.write_text("colour = 1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"longdoc.toml: unknown setting\(s\) colour"):
        Settings.load(config_file=cfg, env={})


def test_a_renamed_setting_names_its_new_name(tmp_path):
    cfg = tmp_path / "longdoc.toml"
    cfg.write_text("int8_decode = false\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="longdoc.toml: int8_decode is now quantized_decode"):
        Settings.load(config_file=cfg, env={})
    with pytest.raises(SettingsError, match="environment: int8_decode is now quantized_decode"):
        Settings.load(env={"LONGDOC_INT8_DECODE": "false"})
    with pytest.raises(SettingsError, match="int8_decode is now quantized_decode"):
        Settings.load(env={}, int8_decode=False)


def test_bad_values_name_the_setting_and_the_choices(tmp_path):
    with pytest.raises(SettingsError, match="rope_scaling='ntk' is not one of yarn, linear, dynamic, none"):
        Settings.load(env={"LONGDOC_ROPE_SCALING": "ntk"})
    with pytest.raises(SettingsError, match="kv_cache_dtype='float16' is not one of auto, float32, bfloat16"):
        Settings.load(env={"LONGDOC_KV_CACHE_DTYPE": "float16"})
    with pytest.raises(SettingsError, match="top_k: expected int, got 'many'"):
        Settings.load(env={"LONGDOC_TOP_K": "many"})
    with pytest.raises(SettingsError, match="fixed_chunk_overlap"):
        Settings(fixed_chunk_tokens=64, fixed_chunk_overlap=64)
    bad = tmp_path / "bad.toml"
    bad.write_text("top_k = = 3", encoding="utf-8")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.load(config_file=bad, env={})


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="config file not found"):
        Settings.load(config_file=tmp_path / "nope.toml", env={})
    for named in (tmp_path / "nope.toml", tmp_path):  # a typo, or a folder: never silently the defaults
        with pytest.raises(SettingsError, match=r"config file not found \(the path in LONGDOC_CONFIG\)"):
            Settings.load(env={"LONGDOC_CONFIG": str(named)})


def test_a_toml_number_of_the_wrong_kind_is_refused_not_rounded(tmp_path):
    config = tmp_path / "longdoc.toml"
    for line, shown in (("top_k = 2.7", "2.7"), ("top_k = true", "True"), ("min_relevance = true", "True")):
        config.write_text(line, encoding="utf-8")
        name = line.split()[0]
        with pytest.raises(SettingsError, match=f"{name}: expected (int|float), got {shown}"):
            Settings.load(config_file=config, env={})
    config.write_text("top_k = 3.0\nmin_relevance = 1", encoding="utf-8")
    loaded = Settings.load(config_file=config, env={})
    assert (loaded.top_k, loaded.min_relevance) == (3, 1.0)


def test_vector_store_names_a_backend_and_its_password_is_never_shown():
    url = "postgresql://longdoc:s3cret@db.example:5432/library"
    settings = Settings.load(env={"LONGDOC_VECTOR_STORE": url})
    assert settings.vector_store == url
    assert settings.to_dict()["vector_store"] == "postgresql://longdoc:***@db.example:5432/library"
    assert "s3cret" not in repr(settings.to_dict())
    assert Settings.load(env={"LONGDOC_VECTOR_STORE": "milvus://127.0.0.1:19530"}).to_dict()["vector_store"] == \
        "milvus://127.0.0.1:19530"
    with pytest.raises(SettingsError, match=r"vector_store='redis://h:1' names no backend: use 'faiss'"):
        Settings.load(env={"LONGDOC_VECTOR_STORE": "redis://h:1"})
    assert "s3cret" not in repr(settings)


def test_redact_hides_a_password_wherever_the_url_puts_it():
    from index.stores import redact

    assert redact("postgresql://u@h/db?sslmode=require&password=s3") == "postgresql://u@h/db?sslmode=require&password=***"
    assert redact("host=h password=s3 user=u") == "host=h password=*** user=u"
    assert redact("postgresql://u:s3@[::1]:5432/db") == "postgresql://u:***@[::1]:5432/db"
    assert redact("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"


def test_files_are_read_with_the_settings_defaults_when_no_settings_are_given():
    """`load_document` called on its own reads a PDF as `longdoc ingest` does: ReadOptions' defaults are the
    settings' defaults."""
    import dataclasses

    from ingest.types import ReadOptions

    settings = Settings.load(config_file=None, env={})
    read = {f.name for f in dataclasses.fields(ReadOptions)} - {"show_progress"}
    assert ReadOptions(**{name: getattr(settings, name) for name in read}) == ReadOptions()


def test_ocr_settings_are_checked_when_loaded():
    with pytest.raises(SettingsError, match=r"ocr='sometimes' is not one of auto, always, never"):
        Settings.load(env={"LONGDOC_OCR": "sometimes"})
    with pytest.raises(SettingsError, match="ocr_min_confidence"):
        Settings.load(env={"LONGDOC_OCR_MIN_CONFIDENCE": "150"})
    with pytest.raises(SettingsError, match="max_pdf_pages must be positive"):
        Settings.load(env={"LONGDOC_MAX_PDF_PAGES": "0"})
