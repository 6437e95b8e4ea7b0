# One rule per figure of the registry (singledir.figures.registry.FIGURE_LIST), named after it:
# rule figN makes results/figN_<family>.pdf (with its tidy CSV and its statistics,
# results/stats/<family>/figN.csv) for every family that has the figure. What each reads,
# for which experiments, and its settings come from the registry through the helpers in
# figures_common.smk; the plotting code is the figure's own script (Figure.script under
# workflow/scripts/, the rule's `script:`), so editing it reruns that figure only. The
# rule itself is figure_rule in figures_common.smk (why a function: its comment).


for _figure in figure_registry.FIGURE_LIST:
    figure_rule(_figure)


rule stats_table:
    """results/stats/<family>.csv: every statistic of the family's figures."""
    input:
        family_stats_parts,
    output:
        table=f"{RESULTS}/stats/{{family}}.csv",
    wildcard_constraints:
        family="|".join(figure_registry.FAMILIES),
    log:
        f"{RESULTS}/logs/stats_table/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/stats_table/{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/stats_table.py"


rule unknown_figure:
    """A results/fig*_*.pdf or .csv this project does not draw: stops before any job with
    the figures and families it knows (input function unknown_figure in figures_common.smk)."""
    input:
        unknown_figure,
    output:
        f"{RESULTS}/{{target}}.{{ext}}",
    wildcard_constraints:
        target=unknown_figure_regex(),
        ext="pdf|csv",
    log:
        f"{RESULTS}/logs/unknown_figure/{{target}}.{{ext}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/unknown_figure/{{target}}.{{ext}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    shell:
        "echo '{output} is not a figure of this project' > {log}; exit 1"
