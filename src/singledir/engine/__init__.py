"""The perturbation engine: accuracy and loss of a network with units ablated or noised.

- :mod:`~singledir.engine.options`     :class:`~singledir.engine.options.EngineOptions`, how the engine computes;
- :mod:`~singledir.engine.noise_source` seeded noise draws indexed by (layer, perturbation, example);
- :mod:`~singledir.engine.batch`       a batch of perturbations and how it acts on a layer (the base module);
- :mod:`~singledir.engine.perturb`     one code path for every perturbation batch;
- :mod:`~singledir.engine.clamp_plan`  the exact fast path for clamping masks on Sequential models
  (its stages: :mod:`~singledir.engine.clamp_stages`; its per-mask work: :mod:`~singledir.engine.clamp_chains`);
- :mod:`~singledir.engine.linear`      a Linear layer's product on the CPU's fastest fp32 matrix multiply (oneDNN);
- :mod:`~singledir.engine.reference`   the plain definitions the fast paths are tested against;
- :mod:`~singledir.engine.ablation`    cumulative ablation curves and single-unit ablation impact;
- :mod:`~singledir.engine.noise`       noise robustness curves.

The unperturbed activations the engine starts from (means for mean-ablation, variances
for noise) come from :mod:`singledir.models.activations`.
"""
