"""Figures and the report: styling, the HTML report pages, the generated reproduction status.

- :mod:`~singledir.figures.registry`       every figure: paper panel, inputs, script, caption, settings;
- :mod:`~singledir.figures.plotting`       shared figure styling;
- :mod:`~singledir.figures.unit_importance` Figs. 7 and A4: unit statistic vs single-unit ablation impact;
- :mod:`~singledir.figures.report_pages`   HTML pages of the Snakemake report;
- :mod:`~singledir.figures.readme_status`  the generated reproduction status: docs/status.md and the README's summary.
"""
