# Target lists and small helpers, built from the config by singledir.pipeline.plan.
import os
import re

import singledir.training.fused as fused
import singledir.pipeline.plan as plan

RESULTS = "results"

# Software environments for --software-deployment-method conda (paths relative to
# workflow/rules/). Data, figure and table rules use the CPU environment; training and
# analysis rules use the CUDA one unless the config pins `device: cpu`.
ENV_CPU = "../../envs/cpu.yaml"
ENV_TORCH = ENV_CPU if config.get("device") == "cpu" else "../../envs/cuda.yaml"
# envs/*.post-deploy.sh install this checkout's singledir package into those environments.
os.environ.setdefault("SINGLEDIR_ROOT", workflow.basedir)


def profile_resources(rule_name):
    """What the profile's set-resources gives the named rule (e.g. gpu=1 in the GPU
    profiles, runtime, mem_mb), for rules made in a loop, whose names no profile can
    list (the fused training groups inherit train_model's). Literal values only."""
    given = workflow.resource_settings.overwrite_resources.get(rule_name, {})
    return {name: getattr(res, "raw", res) for name, res in dict(given).items()}
# Families served by the generic rules ({family} wildcard). The imagenet family keeps its
# images on disk and has its own rules (workflow/rules/imagenet.smk), so no two rules make
# the same file.
FAMILIES = "|".join(["mnist", "cifar10"])


wildcard_constraints:
    family=FAMILIES,
    model=r"[A-Za-z0-9_.\-]+",
    mode="zero|mean",


def family_cfg(family):
    return config["families"][family]


def analysis_cfg(family):
    return family_cfg(family).get("analysis", {})


def spec_of(wildcards):
    specs = plan.model_specs(config, wildcards.family)
    if wildcards.model not in specs:
        raise ValueError(
            f"model {wildcards.model!r} is not defined by families.{wildcards.family}.experiments "
            f"in the config; known models: {list(specs)[:10]}..."
        )
    return specs[wildcards.model]


def label_path(wildcards):
    return f"{RESULTS}/data/{wildcards.family}/{plan.label_file(spec_of(wildcards))}"


def model_files(family, experiment, pattern):
    """One file per model of an experiment, e.g. pattern='analysis/{model}/noise.csv'."""
    return [
        f"{RESULTS}/{pattern.format(family=family, model=m)}"
        for m in plan.experiment_models(config, family, experiment)
    ]


# Inputs of the per-model analysis rules (analysis.smk).
def _model_inputs(w):
    return {
        "model": f"{RESULTS}/models/{w.family}/{w.model}/model.pt",
        "dataset": f"{RESULTS}/data/{w.family}/dataset.npz",
        "labels": label_path(w),
    }


# Fused training (singledir.training.fused). An experiment with `fuse: K` (K > 1) trains its
# models in groups of up to K same-shaped models, one job per group
# (fused.fusion_groups: grid order; grid variables that change the shape or the schedule
# split groups). Each group is its own rule, defined at the end of train.smk from the
# config, whose outputs are its members' usual model.pt and history.csv in the usual
# formats, so every downstream rule is unchanged. train_model's `model` wildcard excludes
# each family's fused models, so no file has two producing rules. Changing `fuse`
# changes which job produces a model, so Snakemake retrains the regrouped models.
FUSED_GROUPS = {
    fam: fused.fusion_groups(config, fam)
    for fam in plan.enabled_families(config)
    if fam in FAMILIES.split("|")
}


def unfused_model_regex():
    """The `model` wildcard of train_model: any id except a fused one of the same family
    (a lookahead on '<id>/' with a lookbehind on '<family>/')."""
    alts = [
        f"(?<={re.escape(fam)}/)(?:{'|'.join(re.escape(m) for ms in groups.values() for m in ms)})"
        for fam, groups in FUSED_GROUPS.items()
        if groups
    ]
    base = r"[A-Za-z0-9_.\-]+"
    return f"(?!(?:{'|'.join(alts)})/){base}" if alts else base
