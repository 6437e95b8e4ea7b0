"""Per-model measures computed from a trained network or its curves.

- :mod:`~singledir.analysis.auc`          normalized area under an ablation curve;
- :mod:`~singledir.analysis.selectivity`  class selectivity index and mutual information;
- :mod:`~singledir.analysis.unit_shards`  the per-unit table (selectivity, MI, ablation impact, L1),
  split into shards of layers;
- :mod:`~singledir.analysis.unit_stream`  that table with the test set streamed (memory
  independent of the number of test images), and its peak-memory estimate;
- :mod:`~singledir.analysis.probes`       cheap reliance probes (beyond the paper, E1).
"""
