"""The benchmark, ``python -m singledir.bench`` (:mod:`~singledir.bench.cli` says what it prints).

- :mod:`~singledir.bench.timing`          wall times, medians of rounds, the machine's GEMM FLOP/s;
- :mod:`~singledir.bench.synthetic`       random networks and their synthetic data;
- :mod:`~singledir.bench.engine_vs_naive` one cumulative-ablation analysis: the engine against the naive method;
- :mod:`~singledir.bench.fused_training`  K sequential trainings against one fused training of K;
- :mod:`~singledir.bench.gpu_check`       the one-shot device check (``--device cuda``) and its GPU-hour projection;
- :mod:`~singledir.bench.cli`             the command line, the CSV and the summary.
"""
