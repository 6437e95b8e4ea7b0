"""Statistics over networks and the claims table.

- :mod:`~singledir.stats.inference`        bootstrap CIs, Spearman, permutation tests (the one module);
- :mod:`~singledir.stats.net_tables`       per-network tables for figures that compare networks;
- :mod:`~singledir.stats.model_selection`  ablation AUC (Fig. 4c) and the reliance probes (Fig. X1) as
  model-selection signals;
- :mod:`~singledir.stats.claims`           the claims table's machinery: inputs, estimates, verdicts;
- :mod:`~singledir.stats.paper_claims`     the paper's claims, by figure;
- :mod:`~singledir.stats.claims_markdown`  the claims table as markdown (claims.md);
- :mod:`~singledir.stats.beyond_claims`    claims of our own (beyond the paper).
"""
