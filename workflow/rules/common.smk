# Target lists and small helpers, built from the config by singledir.pipeline.plan.
import os
import re

from snakemake.logging import logger

import singledir.data.access as data_access
import singledir.data.imagenet as image_folders
import singledir.pipeline.cost as cost_model
import singledir.pipeline.groups as model_groups
import singledir.pipeline.memory as memory_model
import singledir.pipeline.params as run_params
import singledir.pipeline.plan as plan
import singledir.pipeline.submissions as submissions

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


# Job groups on a cluster (singledir.pipeline.submissions): short per-model jobs of the
# in-memory families share one allocation, up to the profile's group-components per group
# job, one after another (group_slot=1 each; profiles/slurm limits group_slot to 1 per group
# job). Snakemake ignores groups under local execution.
def job_group(rule_name):
    """The `group:` of a rule's jobs: a group name, or None (submitted alone; always without
    the profile's group-components)."""
    return lambda w: submissions.active_group(rule_name, family_cfg(w.family)["dataset"],
                                              workflow.group_settings.group_components)


def job_runtime(rule_name, own):
    """A job's runtime in minutes: `own` (a number or a function of the wildcards), or in a
    group of N jobs its share of the group's walltime (submissions.grouped_runtime)."""
    def fn(w):
        own_min = own(w) if callable(own) else own
        group = submissions.job_group(rule_name, family_cfg(w.family)["dataset"])
        return submissions.grouped_runtime(own_min, group, workflow.group_settings.group_components)

    return fn


# Families whose data is one in-memory npz (results/data/<family>/dataset.npz). The
# imagenet family keeps its images on disk (IMAGE_FAMILIES): the data rules of data.smk
# index them and record the analysis subset; every other rule serves both kinds.
FAMILIES = "|".join(["mnist", "cifar10"])
IMAGE_FAMILIES = "|".join(["imagenet"])
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


_FAMILY_SPECS = {}


def family_specs(family):
    """Every model spec of ``family`` (plan.model_specs), built once per workflow parse: the
    config does not change during one, and input, params and resource functions ask for
    a spec several times per job (at paper scale, 1,720 jobs)."""
    if family not in _FAMILY_SPECS:
        _FAMILY_SPECS[family] = plan.model_specs(config, family)
    return _FAMILY_SPECS[family]


def spec_of(wildcards):
    specs = family_specs(wildcards.family)
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


_IMAGE_FOLDER_WARNED = set()


def image_folder_inputs(wildcards):
    """image_index's input: the generated stand-in, or nothing (the images are not a
    Snakemake file). A root without the expected layout is reported here as a warning,
    when the index is part of the DAG (nothing is listed or read), so a dry run still
    plans everything; the index job itself then stops with the same error."""
    ds = image_dataset(wildcards.family)
    if ds.get("generate"):
        return {"standin": ds["root"]}
    try:
        image_folders.check_layout(ds)
    except image_folders.DataError as err:
        if wildcards.family not in _IMAGE_FOLDER_WARNED:
            _IMAGE_FOLDER_WARNED.add(wildcards.family)
            logger.warning(f"WARNING: {err}\nJob image_index will stop with this error until the images are there.")
    return {}


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


# Inputs and resources of the training rules (train.smk), for every family.
def training_inputs(w):
    """A model's labels and its family's data file; for an image family, also a checkpoint
    file named by model.weights (so a workflow output works there too)."""
    inputs = {"labels": label_path(w)}
    if not stores_images(w.family):
        return dict(inputs, dataset=family_data(w))
    # torch (through models.resnet) only when an image family is in the DAG
    from singledir.models.resnet import checkpoint_file

    ckpt = checkpoint_file(spec_of(w)["model"])
    return dict(inputs, index=family_data(w), **({"checkpoint": ckpt} if ckpt else {}))


_DATA_SIZES = {}


def data_size(family):
    """The family's example counts and shape (singledir.pipeline.cost.dataset_size, from
    headers only), once per parse; None where they cannot be read yet."""
    if family not in _DATA_SIZES:
        try:
            _DATA_SIZES[family] = cost_model.dataset_size(family_cfg(family)["dataset"])
        except (OSError, KeyError, ValueError):
            _DATA_SIZES[family] = None
    return _DATA_SIZES[family]


# Memory a job asks for: the plan's peak estimate of that job with its margin
# (singledir.pipeline.memory.mem_mb); 16 GB where the data size cannot be read at parse time.
def job_mem_mb(rule_name, family, model=None, members=1):
    """mem_mb of one job of `rule_name` (of model `model`; training: `members` fused models)."""
    data = data_size(family)
    if data is None:
        return 16000
    spec = family_specs(family)[model] if model else None
    if rule_name == "prepare_dataset":
        peak = memory_model.prepare_dataset_peak_bytes(data)
    elif rule_name == "train_model":
        peak = memory_model.training_peak_bytes([spec] * members, data, stores_images(family),
                                                run_params.training_run_options(config, family, spec["experiment"]))
    elif rule_name == "unit_analysis" and unit_shard_count(family) > 1:
        peak = memory_model.small_peak_bytes()  # it merges the shards' tables
    elif rule_name in ("unit_analysis", "unit_shard"):
        peak = memory_model.unit_analysis_peak_bytes(spec, data, analysis_cfg(family), stores_images(family))
    else:
        peak = memory_model.curve_peak_bytes(spec, data, analysis_cfg(family), stores_images(family))
    return memory_model.mem_mb(peak / memory_model.MB)


def estimated_mem_mb(rule_name):
    """The mem_mb resource function of a rule (wildcards family and, but for prepare_dataset, model)."""
    return lambda w: job_mem_mb(rule_name, w.family, dict(w.items()).get("model"))


def training_resources(family, spec, members=1):
    """A training job's resources: GPUs and nodes from its run options
    (singledir.pipeline.params.training_gpus), image-decoding CPUs (train.threads) for an
    image family, walltime per kind of data (an ImageNet ResNet: 3 days) and the memory
    estimate (estimated_mem_mb) of `members` fused models."""
    trains = not spec["model"].get("weights")
    options = run_params.training_run_options(config, family, spec["experiment"])
    images = stores_images(family)
    return {"gpu": run_params.training_gpus(config, family, spec["experiment"], trains),
            "nodes": int(options.get("nodes", 1)) if trains else 1,
            "cpus_per_task": int(options.get("threads", 1)) if trains and images else 1,
            "runtime": 4320 if images else 1440,
            "mem_mb": job_mem_mb("train_model", family, spec["id"], members)}


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
