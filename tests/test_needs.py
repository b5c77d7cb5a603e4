"""What each analysis needs of a run: the reasons a run skips it, the placeholders a skipped job writes, and the
rules, scripts and captions that carry the reason."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, rule_bodies, workflow_text
from simcon.needs import COUNTED, NEEDS, SKIPPED_COLUMN, skipped_analyses, unmet_needs, write_skipped

RICH = {"datasets": 4, "models": 6, "metrics": 3, "anchors": 2, "per_k_datasets": 6, "layer_models": 3}


def test_a_run_with_enough_of_everything_skips_nothing():
    assert set(COUNTED) == set(RICH)
    assert skipped_analyses(RICH) == dict.fromkeys(NEEDS, "")


@pytest.mark.parametrize(
    "analysis,counts,reason",
    [
        ("consistency", {"datasets": 1}, "needs at least 2 datasets; this run has 1 dataset"),
        (
            "consistency",
            {"datasets": 1, "models": 2},
            "needs at least 2 datasets and 3 models; this run has 1 dataset and 2 models",
        ),
        ("permutation_test", {"models": 3}, "needs at least 4 models; this run has 3 models"),
        ("consistency_anchors", {"anchors": 0}, "needs at least 1 anchor model; this run has 0 anchor models"),
        ("metric_means", {"metrics": 1}, "needs at least 2 metrics; this run has 1 metric"),
        (
            "layer_consistency",
            {"layer_models": 1},
            "needs at least 3 models with layers; this run has 1 model with layers",
        ),
        ("mean_vs_std", {"models": 1}, "needs at least 2 models; this run has 1 model"),
    ],
)
def test_the_reason_says_what_is_needed_and_what_the_run_has(analysis, counts, reason):
    assert unmet_needs(analysis, {**RICH, **counts}) == reason


def _output_paths(body: str) -> list[str]:
    """The quoted paths of a rule's output section."""
    section = re.search(r"^    output:\n((?:        .*\n|            .*\n)*)", body, flags=re.M)
    return re.findall(r'"(results/[^"]+)"', section.group(1)) if section else []


def test_an_analysis_reads_only_analyses_that_need_no_more_than_it():
    """A skipped job's placeholders are never read as results: whatever reads an analysis's outputs (directly or
    through an input function of common.smk) needs at least as much."""
    bodies = rule_bodies()
    functions = dict(re.findall(r"^def (\w+)\(.*?\n((?:(?:[ \t].*)?\n)*)", workflow_text(), flags=re.M))
    read = 0
    for reader in NEEDS:
        body = bodies[reader].split("    output:")[0]
        text = body + "".join(functions[name] for name in functions if re.search(rf"\b{name}\b", body))
        for source in NEEDS:
            if source != reader and any(path in text for path in _output_paths(bodies[source])):
                read += 1
                for what, least in NEEDS[source].items():
                    assert NEEDS[reader].get(what, 0) >= least, (reader, source, what)
    assert read >= 4  # consistency's table is read by its anchors, matrices, bootstrap and App. E jobs


def test_every_analysis_rule_passes_its_reason_and_its_script_writes_the_placeholders():
    bodies = rule_bodies()
    for rule, body in bodies.items():
        script = (REPO / "scripts" / f"{rule}.py").read_text() if f'scripts/{rule}.py"' in body else ""
        passes = f'skipped=SKIPPED["{rule}"]' in body
        assert passes == (rule in NEEDS) == ("with analysis_job(snakemake):" in script), rule
        for caption in re.findall(r'caption="\.\./report/([\w.]+)"', body):
            text = (REPO / "workflow/report" / caption).read_text()
            assert text.startswith("{% if snakemake.params.skipped %}**Skipped**") == (rule in NEEDS), caption


def test_a_skipped_job_writes_a_placeholder_for_every_output(tmp_path, capsys):
    outputs = [tmp_path / "table.csv", tmp_path / "page.html", tmp_path / "figure.png"]
    write_skipped(outputs, "consistency", "needs at least 2 datasets; this run has 1 dataset")
    line = "consistency skipped: needs at least 2 datasets; this run has 1 dataset"
    assert capsys.readouterr().out == line + "\n"
    assert pd.read_csv(outputs[0]).to_dict("list") == {SKIPPED_COLUMN: [line]}
    assert line in outputs[1].read_text() and "<table" in outputs[1].read_text()
    assert min(Image.open(outputs[2]).size) > 150
    with pytest.raises(ValueError, match=r"no placeholder for the output .*\.npy of consistency"):
        write_skipped([tmp_path / "x.npy"], "consistency", "needs more")


def test_outputs_md_lists_what_each_analysis_needs():
    text = (REPO / "docs/outputs.md").read_text().split("## Analyses a run is too small for")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|(]*?)\s*(?:\([^|]*\))? \|$", text, flags=re.M))
    expected = {
        rule: ", ".join(f"{least} {COUNTED[what][least != 1]}" for what, least in needs.items())
        for rule, needs in NEEDS.items()
    }
    assert rows == expected
