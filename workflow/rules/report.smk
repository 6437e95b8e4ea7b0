# The claims table (part of all_figures) and the pages of the HTML report
# (`make report` = snakemake report_pages, then snakemake --report results/report.html).
report: "../report/workflow.rst"


REPORT_CATEGORY = "Reproduction summary"


from singledir.stats.claims import stand_in_families


rule claims:
    """results/claims.csv and .md: each claim of the paper, ours with a 95 % bootstrap CI, and
    its verdict (rules in singledir.stats.claims)."""
    input:
        unpack(claims_inputs),
    output:
        csv=report(f"{RESULTS}/claims.csv", caption="../report/claims_csv.rst", category=REPORT_CATEGORY),
        md=f"{RESULTS}/claims.md",
    params:
        scale=config["scale"],
        labels={fam: family_cfg(fam).get("label", fam) for fam in plan.enabled_families(config)},
        # families run on stand-in data: their value claims are "not comparable"
        stand_ins=[fam for fam in plan.enabled_families(config) if fam in stand_in_families(config)],
        bootstrap=config["bootstrap"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/claims.log",
    benchmark:
        f"{RESULTS}/benchmarks/claims/claims.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/claims.py"


rule claims_page:
    """The claims table as an HTML page of the report."""
    input:
        claims=rules.claims.output.csv,
    output:
        html=report(f"{RESULTS}/report/claims.html", caption="../report/claims.rst", category=REPORT_CATEGORY),
    params:
        page="claims",
        scale=config["scale"],
    log:
        f"{RESULTS}/logs/report_pages/claims.log",
    benchmark:
        f"{RESULTS}/benchmarks/report_pages/claims.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/report_pages.py"


rule runtime_table:
    """Per-rule runtimes and peak memory from every job's benchmark file. Runs after all
    figures and the claims so their jobs are counted."""
    input:
        all_figure_targets(),
        rules.claims.output.csv,
    output:
        csv=f"{RESULTS}/report/runtimes.csv",
        html=report(f"{RESULTS}/report/runtimes.html", caption="../report/runtimes.rst", category=REPORT_CATEGORY),
    params:
        page="runtimes",
        scale=config["scale"],
        # rule -> benchmark pattern, read when the DAG is built (after every .smk is parsed)
        benchmarks=lambda w: {r.name: str(r.benchmark) for r in workflow.rules if r.benchmark},
        # files no pattern names (rules that write their own benchmark) are attributed by directory
        benchmark_dir=f"{RESULTS}/benchmarks",
    log:
        f"{RESULTS}/logs/report_pages/runtimes.log",
    benchmark:
        f"{RESULTS}/benchmarks/report_pages/runtimes.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/report_pages.py"


rule config_page:
    """The effective config as an HTML page of the report (reruns when the config changes)."""
    output:
        html=report(f"{RESULTS}/report/config.html", caption="../report/config.rst", category=REPORT_CATEGORY),
    params:
        page="config",
        config=config,
        configfiles=[str(f) for f in workflow.configfiles],
    log:
        f"{RESULTS}/logs/report_pages/config.log",
    benchmark:
        f"{RESULTS}/benchmarks/report_pages/config.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/report_pages.py"


rule figure_gallery:
    """Every figure as a PNG preview on one page: browsers (and headless ones) that do not
    render PDFs inline still show all figures."""
    input:
        pdfs=[f for f in all_figure_targets() if f.endswith(".pdf")],
    output:
        html=report(f"{RESULTS}/report/figures.html", caption="../report/gallery.rst", category=REPORT_CATEGORY),
    params:
        page="gallery",
        scale=config["scale"],
    log:
        f"{RESULTS}/logs/report_pages/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/report_pages/figures.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/report_pages.py"


rule report_pages:
    """Everything `snakemake --report` needs besides the figures."""
    input:
        rules.claims_page.output,
        rules.runtime_table.output,
        rules.config_page.output,
        rules.figure_gallery.output,
    localrule: True
