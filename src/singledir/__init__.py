"""singledir: a reproduction of Morcos et al. (ICLR 2018),
"On the importance of single directions for generalization".

The science lives here as plain functions with no Snakemake imports; the workflow
under ``workflow/`` only wires them together. One concept per module:

- :mod:`singledir.data`         dataset sources (torchvision, scikit-learn digits, npz)
- :mod:`singledir.corruption`   label corruption (paper section 2.1)
- :mod:`singledir.models`       the MLP and ConvNet of appendix A.2
- :mod:`singledir.training`     deterministic, resumable training
- :mod:`singledir.perturb`      the perturbation engine (ablation masks and noise)
- :mod:`singledir.ablation`     cumulative ablation curves, AUC, single-unit impact
- :mod:`singledir.noise`        noise robustness curves
- :mod:`singledir.selectivity`  class selectivity index and mutual information
- :mod:`singledir.stats`        Spearman correlations with bootstrap confidence intervals
- :mod:`singledir.plan`         which models, analyses and figures a config asks for
"""

__version__ = "0.1.0"
