# Target lists and small helpers, built from the config by singledir.pipeline.plan.
import os
import re

import singledir.data.access as data_access
import singledir.pipeline.groups as model_groups
import singledir.pipeline.params as run_params
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
# Families whose data is one in-memory npz (results/data/<family>/dataset.npz): served by
# the generic data, training and figure rules. The imagenet family keeps its images on disk
# and has its own index, subset and (DDP) training rules (workflow/rules/imagenet.smk).
FAMILIES = "|".join(["mnist", "cifar10"])
# Families served by the per-model rules (corrupt_labels, ablation_curve, noise_curve,
# unit_analysis, unit_shard, training_auc; workflow/rules/analysis.smk): every family. Their
# input functions below and singledir.data.access hide npz vs image index.
ANALYSED_FAMILIES = "|".join(["mnist", "cifar10", "imagenet"])


wildcard_constraints:
    family=FAMILIES,
    model=model_groups.MODEL_ID_REGEX,
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


# Inputs and params of the per-model rules (analysis.smk), for every family.
def image_dataset(family):
    """An image family's dataset section, with ``root`` where the images are (a generated
    stand-in's: results/data/<family>/standin, written by its standin rule)."""
    ds = dict(family_cfg(family)["dataset"])
    if ds.get("generate"):
        ds["root"] = f"{RESULTS}/data/{family}/standin"
    return ds


def stores_images(family):
    """Whether the family's data is an image index on disk (else one in-memory npz)."""
    return data_access.data_form(family_cfg(family)["dataset"]) == data_access.IMAGES


def family_data(wildcards):
    """The family's data file: dataset.npz, or the image index (index.csv.gz)."""
    name = "index.csv.gz" if stores_images(wildcards.family) else "dataset.npz"
    return f"{RESULTS}/data/{wildcards.family}/{name}"


def _model_inputs(w):
    """A trained model, its (possibly corrupted) training labels and the family's data:
    dataset.npz, or the image index with the recorded analysis subset."""
    inputs = {"model": f"{RESULTS}/models/{w.family}/{w.model}/model.pt", "labels": label_path(w)}
    if stores_images(w.family):
        return dict(inputs, index=family_data(w), subset=f"{RESULTS}/data/{w.family}/subset.csv")
    return dict(inputs, dataset=family_data(w))


def result_params(rule_name):
    """Params of a per-model rule: only the config values its numbers depend on
    (singledir.pipeline.params), plus the image family's dataset section (the transform)."""
    def fn(w):
        params = run_params.result_params(config, w.family, rule_name)
        if stores_images(w.family):
            params["dataset"] = image_dataset(w.family)
        return params

    return fn


def analysis_threads(w):
    """One thread, plus the image-decoding processes of an image family."""
    return int(run_params.speed_settings(config, w.family)["loader_workers"]) + 1


def unit_shard_count(family):
    """Jobs the per-unit analysis of one model is split into (analysis.unit_shards)."""
    return int(analysis_cfg(family).get("unit_shards", 1))


def unit_analysis_inputs(w):
    """One job computes the units table (unit_shards: 1), or it merges the shards' tables."""
    n = unit_shard_count(w.family)
    if n == 1:
        return _model_inputs(w)
    return {"shards": [f"{RESULTS}/analysis/{w.family}/{w.model}/unit_shards/{i}_of_{n}.csv" for i in range(n)]}


# Fused training (singledir.training.fused). An experiment with `fuse: K` (K > 1) trains its
# models in groups of up to K same-shaped models, one job per group
# (singledir.pipeline.groups.fusion_groups: grid order; grid variables that change the shape
# or the schedule split groups). Each group is its own rule, defined at the end of train.smk
# from the config, whose outputs are its members' usual model.pt and history.csv in the
# usual formats, so every downstream rule is unchanged. train_model's `model` wildcard
# excludes each family's fused models, so no file has two producing rules. Changing `fuse`
# changes which job produces a model, so Snakemake retrains the regrouped models.
FUSED_GROUPS = {
    fam: model_groups.fusion_groups(config, fam)
    for fam in plan.enabled_families(config)
    if fam in FAMILIES.split("|")
}


def unfused_model_regex():
    """The `model` wildcard of train_model: any id except a fused one of the same family."""
    return model_groups.ungrouped_member_regex(FUSED_GROUPS)
