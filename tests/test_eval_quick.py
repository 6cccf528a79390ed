"""`longdoc eval niah` and `longdoc eval position` run end to end on tiny inputs and write well-formed results.

The figures are not asserted (a 135M model on 2 cores is not the point here): the files a user reads are. The
inputs are the fixtures' CUAD contracts (the haystack) and NQ questions, so nothing outside the repository is read.
"""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from app.evals.cli import eval_app
from app.reorder import REORDERERS
from conftest import FIXTURES

runner = CliRunner()
HAYSTACK = FIXTURES / "cuad_dev" / "contracts"
# The first 40 questions of the NQ oracle set: distractors come from these questions' passages (embedding all 800
# is slow).
NQ_QUESTIONS = FIXTURES / "nq_dev" / "nq-open-oracle-dev.jsonl"
pytestmark = pytest.mark.slow  # loads the generator


def _png_ok(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100


def test_niah_writes_a_cell_per_mode_length_and_depth_and_a_heatmap_per_mode(tmp_path):
    result = runner.invoke(eval_app, ["niah", "--quick", "--lengths", "512", "--depths", "0,100",
                                      "--haystack", str(HAYSTACK), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "niah.json").read_text())
    assert report["lengths"] == [512] and report["depths"] == [0, 100]
    modes = {(c["mode"], c["variant"]) for c in report["cells"]}
    assert modes == {("rag", s) for s in REORDERERS} | {("full_document", "yarn"), ("full_document", "none")}
    assert len(report["cells"]) == len(modes) * 2
    for cell in report["cells"]:
        assert cell["correct"] in (True, False)  # 512 tokens fit every window
        assert (cell["needle_in_prompt"] is None) == (cell["mode"] == "full_document")
        assert cell["code"] and cell["question"].endswith("vault?") and cell["needle_offset"] >= 0
    assert set(report["summary"]) == {f"{m}/{v}" for m, v in modes}
    for mode, variant in modes:
        _png_ok(tmp_path / f"niah_{mode}_{variant}.png")
    _png_ok(tmp_path / "niah_rag_retrieval.png")


def test_niah_modes_restrict_the_run_and_a_bad_mode_is_refused(tmp_path):
    result = runner.invoke(eval_app, ["niah", "--lengths", "512", "--depths", "50", "--modes", "full_document",
                                      "--haystack", str(HAYSTACK), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "niah.json").read_text())
    assert {(c["mode"], c["variant"]) for c in report["cells"]} == {("full_document", "yarn"), ("full_document", "none")}
    bad = runner.invoke(eval_app, ["niah", "--modes", "rag,whole"])
    assert bad.exit_code != 0 and "modes are rag and/or full_document" in bad.output


def test_position_writes_an_accuracy_per_gold_rank_and_strategy_and_the_u_curve(tmp_path):
    result = runner.invoke(eval_app, ["position", "--quick", "--n", "2", "--k", "4", "--data", str(NQ_QUESTIONS),
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "position.json").read_text())
    assert report["questions"] == 2 and report["ks"] == [4]
    ranks = report["gold_ranks"]["4"]
    assert ranks == [0, 2, 3]
    summary = report["summary"]["4"]
    assert set(summary) == set(REORDERERS)
    for strategy, rows in summary.items():
        assert [r["gold_rank"] for r in rows["placed"]] == ranks
        assert all(0 <= r["accuracy"] <= 1 and 0 <= r["gold_position"] <= 3 for r in rows["placed"])
        assert rows["retriever"]["n"] == 2
    # with no reordering the gold sits where it was ranked; important_first_last puts rank 0 first
    none = {r["gold_rank"]: r["gold_position"] for r in summary["none"]["placed"]}
    assert none == {r: r for r in ranks}
    assert summary["important_first_last"]["placed"][0]["gold_position"] == 0
    assert len(report["trials"]) == 2 * (len(ranks) + 1) * len(REORDERERS)
    _png_ok(tmp_path / "position.png")
