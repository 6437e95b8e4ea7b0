"""EngineOptions: one value object for how the engine computes, read from a family's analysis config."""
import pytest

from singledir.engine.options import EngineOptions


def test_from_config_reads_engine_keys_defaults_the_rest_and_ignores_others():
    opts = EngineOptions.from_config({"method": "generic", "precision": "bf16", "chunk_size": 7, "max_rows": 99,
                                      "topk": 5, "orderings": 10, "mi_bins": 4})
    assert opts == EngineOptions(method="generic", precision="bf16", chunk_size=7, max_rows=99, topk=5)
    assert EngineOptions.from_config({}) == EngineOptions()
    assert EngineOptions() == EngineOptions(method="auto", precision="fp32", chunk_size=1024, max_rows=65536, topk=1)


@pytest.mark.parametrize("key,value,message", [
    ("method", "fast", "method: unknown method 'fast'"),
    ("precision", "fp16", "precision: unknown precision 'fp16'"),
    ("chunk_size", 0, "chunk_size: must be at least 1"),
])
def test_bad_option_is_one_error_naming_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        EngineOptions.from_config({key: value})


def test_options_are_frozen():
    with pytest.raises(AttributeError):
        EngineOptions().method = "plan"
