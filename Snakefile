from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


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


rule all:
    input:
        final_outputs(),
        zoo_outputs(),
        layer_outputs(),
    default_target: True
