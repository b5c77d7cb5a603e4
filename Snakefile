import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# This repository (also where another workflow uses this one as a module, whose basedir is its own).
REPO = Path(str(workflow.current_basedir))
sys.path.insert(0, str(REPO / "src"))
from simcon.config import DEFAULT_CONFIG, read_config_file

# The default experiment beside this Snakefile, whatever the working directory (--directory), so that every
# --configfile merges over it. simcon reads it first: a YAML error in it is a ConfigError naming file and line.
read_config_file(REPO / DEFAULT_CONFIG)


configfile: str(REPO / DEFAULT_CONFIG)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/zoo.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/similarity.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/structure.smk"
include: "workflow/rules/sample_size.smk"
include: "workflow/rules/consistency.smk"
include: "workflow/rules/performance.smk"
include: "workflow/rules/layers.smk"
include: "workflow/rules/report.smk"


if GIVEN:  # the analyses start from similarity tables (config `similarities`), not from images

    include: "workflow/rules/tables.smk"


onstart:
    for analysis, reason in SKIPPED.items():
        if reason:
            print(f"{analysis} skipped: {reason} (its outputs say so: docs/outputs.md)")


rule all:
    input:
        final_outputs(),
        zoo_outputs(),
        layer_outputs(),
    default_target: True
