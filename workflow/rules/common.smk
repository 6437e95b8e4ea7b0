# Target lists and small helpers, built from the config by singledir.plan.
import singledir.plan as plan

plan.check_config(config)

RESULTS = "results"
FAMILIES = "|".join(["mnist", "cifar10", "imagenet"])


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
        f"{RESULTS}/" + pattern.format(family=family, model=m)
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
