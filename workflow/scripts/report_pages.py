"""HTML pages for the Snakemake report: claims table, per-rule runtimes, effective config."""
import pandas as pd

from singledir.figures import report_pages
from singledir.io import atomic_path, save_csv
from singledir.pipeline.logs import log_to

sm = snakemake


def write(text, path):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


with log_to(sm.log[0]):
    page = sm.params.page
    if page == "claims":
        write(report_pages.claims_html(pd.read_csv(sm.input.claims), sm.params.scale), sm.output.html)
    elif page == "runtimes":
        table = report_pages.runtime_table(sm.params.benchmarks, benchmark_dir=sm.params.benchmark_dir)
        print(table.to_string())
        save_csv(table, sm.output.csv)
        write(report_pages.runtime_html(table, sm.params.scale), sm.output.html)
        print(f"{int(table['jobs'].sum()) if len(table) else 0} benchmark files, {len(table)} rules")
    elif page == "gallery":
        write(report_pages.gallery_html(list(sm.input.pdfs), sm.params.scale), sm.output.html)
    elif page == "config":
        write(report_pages.config_html(sm.config, sm.params.configfiles), sm.output.html)
    else:
        raise ValueError(f"report_pages.py: unknown page {page!r}")
