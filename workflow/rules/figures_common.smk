# The figure rule (figure_rule, made once per registered figure by figures.smk) and its
# inputs, params, outputs and target lists, all derived from the figure registry
# (singledir.figures.registry). The other rules are in figures.smk (snakemake --lint: no
# functions beside named rules).
import singledir.figures.registry as figure_registry


def figure_docstring(figure):
    """What `snakemake --list-rules` says of a figure rule: its panels by family, and the
    registry's title, e.g. "Fig. 2a mnist, 2b cifar10: Memorizing networks are ..."."""
    panels = ", ".join(f"{panel.panel} {fam}" for fam, panel in figure.panels.items())
    beyond = " (beyond the paper)" if figure.beyond else ""
    return f"Fig. {panels}{beyond}: {figure.title}."


def figure_families(figure):
    """The `family` wildcard of a figure rule: the families that have the figure."""
    return "|".join(figure_registry.families_of(figure))


def figure_inputs(figure):
    """Input function (use with unpack): input name -> the per-model files of the panel."""

    def inputs(wildcards):
        files = figure_registry.input_files(
            figure, wildcards.family, lambda sel: plan.experiment_models(config, wildcards.family, sel), RESULTS)
        if figure_registry.judges_training(figure, wildcards.family):
            files["data"] = family_data(wildcards)  # its class count: chance, to tell nets that failed to train
        return files

    return inputs


def figure_specs(figure):
    """The model specs the figure draws, by model id (what, besides the files, changes it)."""

    def specs(wildcards):
        fam = wildcards.family
        all_specs = family_specs(fam)
        return {m: all_specs[m] for sel in figure_registry.panel(figure, fam).selections
                for m in plan.experiment_models(config, fam, sel)}

    return specs


def figure_params(figure):
    """Params of a figure rule: only what changes the figure (the models' specs, the scale
    and data label in the title, the bootstrap and seed of its statistics, and the panel's
    settings from the registry and families.<family>.figures.<figure>)."""
    return dict(
        specs=figure_specs(figure),
        scale=config["scale"],
        label=lambda w: family_cfg(w.family).get("label", w.family),
        bootstrap=config["bootstrap"],
        seed=config["seed"],
        figure=lambda w: figure_registry.settings(figure, w.family, family_cfg(w.family)),
    )


def figure_outputs(figure):
    """The PDF (in the report's Figures section, with the figure's caption), its tidy CSV and
    its statistics."""
    return dict(
        pdf=report(f"{RESULTS}/{figure}_{{family}}.pdf", caption=f"../report/{figure}.rst", category="Figures",
                   subcategory="{family}"),
        csv=f"{RESULTS}/{figure}_{{family}}.csv",
        stats=f"{RESULTS}/stats/{{family}}/{figure}.csv",
    )


# The rule of one figure of the registry (figures.smk makes one per figure). Why a function
# and not a bare loop over the figures: Snakemake evaluates a `script:` path twice, when the
# rule is defined (the script it tracks) and again when the job runs, inside the rule's
# run function. In a module-level loop the second evaluation reads the loop variable's
# last value (every figure would run the last figure's script); here the run function is
# a closure over this call's `figure`, so each rule runs its own script
# (tests/figures/test_figure_registry.py runs them).
def figure_rule(figure):
    rule:
        f"""{figure_docstring(figure)}"""
        name:
            figure.name
        input:
            unpack(figure_inputs(figure.name)),
        output:
            **figure_outputs(figure.name),
        params:
            **figure_params(figure.name),
        wildcard_constraints:
            family=figure_families(figure.name),
        log:
            f"{RESULTS}/logs/figures/{figure.name}_{{family}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/figures/{figure.name}_{{family}}.tsv"
        localrule: True
        conda:
            ENV_CPU
        script:
            f"../scripts/{figure.script}"


def all_figure_targets():
    """Every enabled figure's PDF and CSV, and each family's statistics table."""
    figs = plan.figure_targets(config, RESULTS)
    csvs = [f[: -len(".pdf")] + ".csv" for f in figs]
    stats = [f"{RESULTS}/stats/{fam}.csv" for fam in plan.enabled_families(config)
             if any(f.endswith(f"_{fam}.pdf") for f in figs)]
    return figs + csvs + stats


def family_stats_parts(wildcards):
    """The per-figure statistics gathered into results/stats/<family>.csv (enabled figures)."""
    suffix = f"_{wildcards.family}.pdf"
    return [f"{RESULTS}/stats/{wildcards.family}/{os.path.basename(f)[: -len(suffix)]}.csv"
            for f in plan.figure_targets(config, RESULTS) if f.endswith(suffix)]


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


# A figure target the project does not draw (results/fig9_mnist.pdf, results/fig1_svhn.pdf)
# reaches rule unknown_figure (figures.smk), whose input function stops the run before any
# job with the figures and families this project knows.
KNOWN_FIGURES = {f"{fig.name}_{fam}" for fig in figure_registry.FIGURE_LIST for fam in fig.panels}


def unknown_figure_regex():
    known = "|".join(sorted(re.escape(k) for k in KNOWN_FIGURES))
    # The lookahead sees the rest of the path: the wildcard is followed by ".{ext}", so a
    # known figure is excluded only when "<figure>_<family>.pdf|csv" ends the path.
    return rf"(?!(?:{known})\.(?:pdf|csv)$)fig[A-Za-z0-9]*_[A-Za-z0-9_]+"


def unknown_figure(wildcards):
    fig, _, fam = wildcards.target.partition("_")
    if fam in figure_registry.FAMILIES:
        why = f"family {fam} has no figure {fig!r}; its figures are {', '.join(sorted(figure_registry.figures_of(fam)))}"
    else:
        why = f"there is no family {fam!r}; the families are {', '.join(figure_registry.FAMILIES)}"
    enabled = plan.figure_targets(config, RESULTS)
    raise plan.ConfigError(
        f"{RESULTS}/{wildcards.target}.{wildcards.ext} is not a figure of this project: {why}. "
        f"Figures are results/<figure>_<family>.pdf; this config draws {len(enabled)}: "
        f"{', '.join(os.path.basename(f)[:-4] for f in enabled)} (snakemake all_figures draws them all).")
