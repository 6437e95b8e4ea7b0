from singledir.io import save_csv
from singledir.models.nets import resolve_layers
from singledir.engine.noise import noise_curve
from singledir.engine.options import EngineOptions
from singledir.engine.activations import activation_moments
from singledir.pipeline.runtime import eval_subset, load_data, load_model, log_to, pick_device, setup_torch

a = snakemake.params.analysis
with log_to(snakemake.log[0]):
    setup_torch(snakemake.threads, gpus=snakemake.resources.get("gpu", 0))
    device = pick_device(snakemake.params.device)
    data = load_data(snakemake.input.dataset, snakemake.input.labels, device)
    model, state = load_model(snakemake.input.model, device)
    # The paper adds noise "to all units" (Fig. 2): analysis.noise_layers, default all.
    layers = resolve_layers(model, a.get("noise_layers", "all"))
    moments = activation_moments(model, data.x_train, layers, a["chunk_size"])
    x, y = data.x_train, data.y_train
    sub = eval_subset(len(x), a["eval_examples"], snakemake.params.seed)
    if sub is not None:
        x, y = x[sub], y[sub]
    curve = noise_curve(model, x, y, layers, {n: m["var"] for n, m in moments.items()}, a["noise_scales"],
                        repeats=a["noise_repeats"], seed=snakemake.params.seed,
                        options=EngineOptions.from_config(a))
    curve.insert(0, "model", state["spec"]["id"])
    print(curve.groupby("scale")["accuracy"].mean().to_string())
    save_csv(curve, snakemake.output.curve)
