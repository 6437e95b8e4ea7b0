"""The ImageNet per-map analysis split into layer shards merges into the unsharded table."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from singledir.engine.ablation import layer_sizes
from singledir.engine.options import EngineOptions
from singledir.models.activations import collect_activations
from singledir.models.api import unit_layers
from singledir.models.resnet import build_torchvision
from singledir.analysis.unit_shards import UNIT_COLUMNS, merge_unit_tables, shard_layers, unit_table


def test_shard_layers_are_contiguous_balanced_and_cover_every_layer():
    sizes = {"a": 64, "b": 64, "c": 128, "d": 128, "e": 256, "f": 512}
    assert shard_layers(sizes, 1) == [list(sizes)]
    shards = shard_layers(sizes, 3)
    assert sum(shards, []) == list(sizes)  # every layer once, in order
    # middle units 32, 96, 192, 320 | 512 | 896 in shares of 384 units
    assert shards == [["a", "b", "c", "d"], ["e"], ["f"]]
    assert shard_layers({"a": 10, "b": 10}, 4) == [[], ["a"], [], ["b"]]
    with pytest.raises(ValueError, match="analysis.unit_shards must be at least 1"):
        shard_layers(sizes, 0)


def test_sharded_unit_table_equals_the_unsharded_one():
    """The demo's stand-in architecture (ResNet-18 at 1/8 width), every 3rd of its 17
    analysed layers (so depths are not consecutive within a shard's source list)."""
    torch.manual_seed(0)
    example = torch.zeros(1, 3, 16, 16)
    model = build_torchvision({"arch": "torchvision", "name": "resnet18", "width": 0.125, "weights": None}, 5,
                              example).eval()
    layers = unit_layers(model, "all", example)[::3]
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 3, 16, 16, generator=g), torch.arange(30) % 5
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    engine = EngineOptions(chunk_size=8, max_rows=64, topk=2)

    def table(only):
        # each shard sees the spatial means of its own layers only, as the rule's jobs do
        means, labels = collect_activations(model, loader, layers if only is None else only, spatial=True)
        means = {n: m.double().numpy() for n, m in means.items()}
        return unit_table(model, means, labels.numpy(), x[:12], y[:12], layers, only, 5, 4, engine)

    whole = table(None)
    sizes = layer_sizes(model, layers, x[:1])
    assert len(whole) == sum(sizes.values()) and list(whole.columns) == UNIT_COLUMNS
    assert whole["impact"].abs().max() > 0
    shards = shard_layers(sizes, 3)
    assert all(shards) and len(shards) == 3
    merged = merge_unit_tables([table(s) for s in reversed(shards)])  # any order of arrival
    pd.testing.assert_frame_equal(merged, whole.reset_index(drop=True), check_exact=False, rtol=1e-6, atol=1e-7)
    assert merged["depth"].tolist() == whole["depth"].tolist()
    with pytest.raises(ValueError, match="unit shards overlap"):
        merge_unit_tables([table(shards[0]), table(shards[0])])
    with pytest.raises(ValueError, match="unit shards miss layers"):
        merge_unit_tables([table(shards[0]), table(shards[2])])
