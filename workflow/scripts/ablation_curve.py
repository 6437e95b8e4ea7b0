from singledir.engine.ablation import cumulative_ablation_curve
from singledir.engine.options import EngineOptions
from singledir.io import save_csv
from singledir.models.nets import resolve_layers
from singledir.engine.activations import activation_moments
from singledir.pipeline.runtime import eval_subset, load_data, load_model, log_to, pick_device, setup_torch

a = snakemake.params.analysis
with log_to(snakemake.log[0]):
    setup_torch(snakemake.threads, gpus=snakemake.resources.get("gpu", 0))
    device = pick_device(snakemake.params.device)
    data = load_data(snakemake.input.dataset, snakemake.input.labels, device)
    model, state = load_model(snakemake.input.model, device)
    # Fig. 3 (experiment "generalization") may ablate another layer set than Fig. 1b
    # (analysis.fig3_ablation_layers; see config/config.yaml for why).
    spec = state["spec"]
    key = "fig3_ablation_layers" if spec.get("experiment") == "generalization" and "fig3_ablation_layers" in a \
        else "ablation_layers"
    layers = resolve_layers(model, a[key])
    # Dropout nets: a point exactly at round(p * N) units, where Fig. 5a reads the curve.
    p = float(spec.get("model", {}).get("dropout", 0.0) or 0.0)
    x, y = data.x_train, data.y_train  # the training set, with the labels it was trained on
    sub = eval_subset(len(x), a["eval_examples"], snakemake.params.seed)
    if sub is not None:
        x, y = x[sub], y[sub]
    mode = snakemake.wildcards.mode
    moments = activation_moments(model, data.x_train, layers, a["chunk_size"]) if mode == "mean" else None
    curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=a["orderings"], n_points=a["curve_points"],
                                      seed=snakemake.params.seed, mode=mode, moments=moments,
                                      extra_fractions=(p,) if p > 0 else (), options=EngineOptions.from_config(a))
    curve.insert(0, "model", state["spec"]["id"])
    curve.insert(1, "mode", mode)
    print(curve.groupby("n_ablated")["accuracy"].mean().to_string())
    save_csv(curve, snakemake.output.curve)
