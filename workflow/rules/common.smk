# Target lists and small helpers, built from the config by singledir.pipeline.plan.
import os
import re

import singledir.data.access as data_access
import singledir.training.fused as fused
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


def figure_inputs(figure, family, pattern):
    """Per-model files for every experiment figure ``figure`` of ``family`` needs."""
    needs = plan.FIGURES.get(family, {}).get(figure)
    if needs is None:
        raise ValueError(f"{figure}_{family}: no such figure; known: {plan.figure_targets(config)}")
    return [f for exp in needs for f in model_files(family, exp, pattern)]


def all_figure_targets():
    figs = plan.figure_targets(config, RESULTS)
    csvs = [f[: -len(".pdf")] + ".csv" for f in figs]
    stats = [f"{RESULTS}/stats/{fam}.csv" for fam in plan.enabled_families(config)
             if any(f.endswith(f"_{fam}.pdf") for f in figs)]
    return figs + csvs + stats


def figures_of(family):
    return [f for f in plan.figure_targets(config, RESULTS) if f.endswith(f"_{family}.pdf")]


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


# Params and outputs of the figure rules (figures.smk).
def specs_for(figure, family=None):
    def fn(w):
        fam = family or w.family
        needs = plan.FIGURES[fam][figure]
        specs = plan.model_specs(config, fam)
        return {m: specs[m] for e in needs for m in plan.experiment_models(config, fam, e)}

    return fn


def fig_params(figure):
    return dict(
        specs=specs_for(figure),
        scale=config["scale"],
        label=lambda w: family_cfg(w.family).get("label", w.family),
        bootstrap=config["bootstrap"],
        seed=config["seed"],
    )


def fig_outputs(figure):
    return dict(
        pdf=report(f"{RESULTS}/{figure}_{{family}}.pdf", caption=f"../report/{figure}.rst", category="Figures",
                   subcategory="{family}"),
        csv=f"{RESULTS}/{figure}_{{family}}.csv",
        stats=f"{RESULTS}/stats/{{family}}/{figure}.csv",
    )


# Inputs of the claims table (report.smk): every family's stats table, and the tidy figure
# tables some claims resample; only what the config enables (a disabled family's claims
# say "not run").
def claims_inputs(wildcards):
    import singledir.stats.claims as claims_lib

    targets = all_figure_targets()
    tidy = {f"{RESULTS}/{fig}_{fam}.csv" for fig, fam in claims_lib.TIDY_TABLES}
    return {
        "stats": [t for t in targets if t.startswith(f"{RESULTS}/stats/") and t.endswith(".csv")],
        "tables": [t for t in targets if t in tidy],
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


# Inputs, outputs and params of the CIFAR-10 figure rules (cifar10.smk).
def cifar10_files(figure, pattern):
    """Per-model files of the models a CIFAR-10 figure uses."""
    return lambda w: figure_inputs(figure, "cifar10", pattern)


def cifar10_figure_cfg(figure):
    return family_cfg("cifar10").get("figures", {}).get(figure, {})


def cifar10_outputs(figure):
    return dict(
        pdf=report(f"{RESULTS}/{figure}_cifar10.pdf", caption=f"../report/{figure}.rst", category="Figures",
                   subcategory="cifar10"),
        csv=f"{RESULTS}/{figure}_cifar10.csv",
        stats=f"{RESULTS}/stats/cifar10/{figure}.csv",
    )


def cifar10_params(figure):
    return dict(
        specs=specs_for(figure, "cifar10"),
        scale=config["scale"],
        label=lambda w: family_cfg("cifar10").get("label", "cifar10"),
        bootstrap=config["bootstrap"],
        seed=config["seed"],
        figure=lambda w: cifar10_figure_cfg(figure),
    )


# A figure target the project does not draw (results/fig9_mnist.pdf, results/fig1_svhn.pdf)
# reaches rule unknown_figure (Snakefile), whose input function stops the run before any
# job with the figures and families this project knows.
KNOWN_FIGURES = {f"{fig}_{fam}" for fam, figs in plan.FIGURES.items() for fig in figs}


def unknown_figure_regex():
    known = "|".join(sorted(re.escape(k) for k in KNOWN_FIGURES))
    # The lookahead sees the rest of the path: the wildcard is followed by ".{ext}", so a
    # known figure is excluded only when "<figure>_<family>.pdf|csv" ends the path.
    return rf"(?!(?:{known})\.(?:pdf|csv)$)fig[A-Za-z0-9]*_[A-Za-z0-9_]+"


def unknown_figure(wildcards):
    fig, _, fam = wildcards.target.partition("_")
    known = {f: sorted(fig_ for fig_ in figs) for f, figs in plan.FIGURES.items()}
    if fam in plan.FIGURES:
        why = f"family {fam} has no figure {fig!r}; its figures are {', '.join(known[fam])}"
    else:
        why = f"there is no family {fam!r}; the families are {', '.join(plan.FIGURES)}"
    enabled = plan.figure_targets(config, RESULTS)
    raise plan.ConfigError(
        f"{RESULTS}/{wildcards.target}.{wildcards.ext} is not a figure of this project: {why}. "
        f"Figures are results/<figure>_<family>.pdf; this config draws {len(enabled)}: "
        f"{', '.join(os.path.basename(f)[:-4] for f in enabled)} (snakemake all_figures draws them all).")
