# singledir: Morcos et al. (ICLR 2018), "On the importance of single directions for
# generalization", figure by figure. See README.md.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/cifar10.smk"
include: "workflow/rules/imagenet.smk"
include: "workflow/rules/report.smk"


rule all_figures:
    """Every figure the config enables, its tidy CSV, each family's statistics, and the claims table."""
    input:
        all_figure_targets(),
        rules.claims.output,


rule all:
    default_target: True
    input:
        rules.all_figures.input,
