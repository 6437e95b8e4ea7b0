"""singledir: a reproduction of Morcos et al. (ICLR 2018),
"On the importance of single directions for generalization".

The science lives here as plain functions with no Snakemake imports; the workflow
under ``workflow/`` only wires them together. The sub-packages follow the DAG:

- :mod:`singledir.data`      datasets behind one interface, label corruption, the ImageNet index
- :mod:`singledir.models`    the paper's networks (MLP, ConvNet, ResNet) and their unit layers
- :mod:`singledir.training`  one training core: single, fused and distributed loops, checkpoints
- :mod:`singledir.engine`    the perturbation engine: ablation and noise curves, exact fast paths
- :mod:`singledir.analysis`  per-model measures: AUC, selectivity, mutual information, unit tables, probes
- :mod:`singledir.stats`     statistics over networks and the claims table
- :mod:`singledir.figures`   figure registry, plotting, report pages
- :mod:`singledir.pipeline`  what a config asks for: plan, config checks, cost model, job runtime
- :mod:`singledir.io`        atomic file output; :mod:`singledir.bench` the benchmark
"""

__version__ = "0.1.0"
