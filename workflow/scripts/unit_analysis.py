"""Per unit of one trained model (section 3.4, appendices A.3-A.5), every family: class
selectivity and mutual information on the test data, the impact of ablating the unit
alone on the test loss, and the L1 norm of its filter (singledir.analysis.unit_shards).

Rule unit_shard computes the table of shard ``shard`` of ``n_shards`` layer groups; rule
unit_analysis computes the whole table (one shard), or merges the shards' tables."""
import pandas as pd

from singledir.analysis.unit_shards import merge_unit_tables, shard_layers
from singledir.analysis.unit_stream import READ_OF_FORM, streamed_unit_table
from singledir.engine.ablation import layer_sizes
from singledir.io import save_csv
from singledir.models.api import unit_layers
from singledir.pipeline.params import speed_settings
from singledir.pipeline.logs import log_to
from singledir.pipeline.jobs import open_model_job

sm = snakemake
a = sm.params.analysis  # what defines the numbers (singledir.pipeline.params.RESULT_KEYS)
speed = speed_settings(sm.config, sm.wildcards.family)
inputs = dict(sm.input.items())
with log_to(sm.log[0]):
    if "shards" in inputs:
        units = merge_unit_tables([pd.read_csv(p) for p in sm.input.shards])
        print(f"read {len(sm.input.shards)} shards: {list(sm.input.shards)}")
    else:
        shard, n_shards = int(getattr(sm.params, "shard", 0)), int(getattr(sm.params, "n_shards", 1))
        job = open_model_job(inputs, a, speed, threads=sm.threads, gpus=sm.resources.get("gpu", 0),
                             impact_per_class=a.get("impact_per_class", 0))
        model, state, data, device = job.model, job.state, job.data, job.device
        x_imp, y_imp = data.impact_examples()
        layers = unit_layers(model, a["unit_layers"], x_imp)
        mine = shard_layers(layer_sizes(model, layers, x_imp[:1]), n_shards)[shard] if n_shards > 1 else layers
        # Section 3.4: selectivity, information and impact are all measured on the test data,
        # streamed batch by batch (singledir.analysis.unit_stream: memory independent of the
        # number of test images; the spatial means for the information spill to tmpdir).
        print(f"{state['spec']['id']} on {device}: read {sm.input.model}; shard {shard + 1} of {n_shards}: "
              f"{len(mine)} of {len(layers)} layers ({mine[:1]} .. {mine[-1:]}); impact on {len(y_imp)} test "
              f"examples, top-{a.get('topk', 1)}; speed {speed}")
        units = streamed_unit_table(model, data.test_batches(speed["chunk_size"]), x_imp, y_imp, layers, mine,
                                    int(state["n_classes"]), a["mi_bins"], job.options, read=READ_OF_FORM[data.form],
                                    device=device, spill_dir=sm.resources.get("tmpdir"))
        units.insert(0, "model", state["spec"]["id"])
    if len(units):
        print(units.groupby("depth")[["selectivity", "mutual_information", "impact"]].mean().to_string())
    save_csv(units, sm.output.units)
    print(f"wrote {sm.output.units}: {len(units)} units")
