"""Rules get as params only what defines their numbers; speed knobs reach the scripts
another way (singledir.pipeline.params)."""
import pytest

from singledir.pipeline.params import (RESULT_KEYS, SPEED_KEYS, beyond_result_params, engine_options, result_params,
                                       speed_settings)


def config(**analysis):
    base = {"ablation_layers": -3, "unit_layers": "all", "orderings": 10, "curve_points": 21, "eval_examples": 0,
            "noise_scales": [0.0, 1.0], "noise_repeats": 5, "mi_bins": 6, "chunk_size": 512, "max_rows": 1024,
            "topk": 5, "loader_workers": 3, "method": "plan", "precision": "fp32"}
    return {"seed": 7, "device": "cpu", "families": {"mnist": {"analysis": dict(base, **analysis)}}}


def test_no_rule_takes_a_speed_knob_as_a_param():
    cfg = config()
    for rule in RESULT_KEYS:
        assert not set(result_params(cfg, "mnist", rule)) & (set(SPEED_KEYS) | {"device"}), rule


def test_each_rule_gets_only_the_keys_it_uses():
    cfg = config()
    assert result_params(cfg, "mnist", "ablation_curve") == {
        "ablation_layers": -3, "orderings": 10, "curve_points": 21, "eval_examples": 0, "topk": 5,
        "precision": "fp32", "seed": 7}
    assert result_params(cfg, "mnist", "noise_curve") == {
        "noise_scales": [0.0, 1.0], "noise_repeats": 5, "eval_examples": 0, "topk": 5, "precision": "fp32", "seed": 7}
    assert result_params(cfg, "mnist", "unit_analysis") == {"unit_layers": "all", "mi_bins": 6, "topk": 5,
                                                            "precision": "fp32"}
    # noise scales do not rerun ablation curves, unit tables or training AUCs
    for rule in ("ablation_curve", "unit_analysis", "training_auc"):
        assert "noise_scales" not in result_params(cfg, "mnist", rule)
    assert "fig3_ablation_layers" in result_params(config(fig3_ablation_layers="all"), "mnist", "ablation_curve")


def test_probes_get_the_curve_keys_and_their_fractions_only():
    cfg = config()
    cfg["families"]["mnist"]["beyond"] = {"probe_fractions": [0.5], "sparse_fractions": [0.0, 1.0], "probe_group": 24,
                                          "headline_fraction": 0.5, "patience": 3, "subsets": 2000}
    assert result_params(cfg, "mnist", "beyond_probes") == {
        "ablation_layers": -3, "orderings": 10, "curve_points": 21, "eval_examples": 0, "topk": 5,
        "precision": "fp32", "seed": 7}
    # how many networks a job probes, and the figures' statistics, are not the probes' numbers
    assert beyond_result_params(cfg, "mnist", "beyond_probes") == {"probe_fractions": [0.5],
                                                                   "sparse_fractions": [0.0, 1.0]}
    with pytest.raises(KeyError, match="beyond_result_params: unknown rule 'ablation_curve'"):
        beyond_result_params(cfg, "mnist", "ablation_curve")


def test_speed_settings_and_defaults():
    assert speed_settings(config(), "mnist") == {"chunk_size": 512, "max_rows": 1024, "method": "plan",
                                                 "loader_workers": 3, "device": "cpu"}
    bare = {"families": {"mnist": {}}}
    assert speed_settings(bare, "mnist") == {"chunk_size": 1024, "max_rows": 65536, "method": "auto",
                                             "loader_workers": 0, "device": "auto"}
    options = engine_options({"topk": 5, "seed": 7}, speed_settings(config(), "mnist"))
    assert (options.chunk_size, options.max_rows, options.method, options.topk, options.precision) == (
        512, 1024, "plan", 5, "fp32")


def test_unknown_rule_or_family_is_one_clear_error():
    with pytest.raises(KeyError, match="unknown rule 'fig1'"):
        result_params(config(), "mnist", "fig1")
    with pytest.raises(KeyError, match=r"families.svhn: no such family in the config; families: \['mnist'\]"):
        speed_settings(config(), "svhn")
