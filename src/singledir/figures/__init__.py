"""Figures and the report: styling, the HTML report pages, the README status section.

- :mod:`~singledir.figures.plotting`       shared figure styling;
- :mod:`~singledir.figures.report_pages`   HTML pages of the Snakemake report;
- :mod:`~singledir.figures.readme_status`  the README's generated "Reproduction status" section.
"""
