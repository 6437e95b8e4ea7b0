# singledir: Morcos et al. (ICLR 2018), "On the importance of single directions for
# generalization", figure by figure. See README.md.
import os
import sys

from snakemake.utils import min_version

import singledir.pipeline.config_check as config_check

min_version("9.0")


# The config of this run, checked before any job: the --configfile files describe the
# whole run (config/config.yaml only when none is given; no `configfile:` directive, which
# would merge the two), keys they omit take the schema's defaults, and a bad key, a
# duplicate key or a YAML error stops here with one message naming the file and line
# (singledir.pipeline.config_check; schema: workflow/schemas/config.schema.yaml).
CONFIG = config_check.workflow_config(workflow, config)
# What the run will do and cost, before any job (not in the jobs Snakemake spawns, nor
# with SINGLEDIR_QUIET_PLAN=1, which the tests set: counting FLOPs takes a few seconds).
if workflow.is_main_process and not os.environ.get("SINGLEDIR_QUIET_PLAN"):
    import singledir.pipeline.estimate
    import singledir.pipeline.plan

    print(singledir.pipeline.plan.summary(CONFIG.config, CONFIG.files, CONFIG.defaults,
                                          estimated=singledir.pipeline.estimate.estimate(CONFIG.config)),
          file=sys.stderr, flush=True)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures_common.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/beyond_common.smk"
include: "workflow/rules/beyond.smk"
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
