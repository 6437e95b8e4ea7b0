"""The design of a config as :func:`singledir.stats.design.undecidable_claims` reads it, and the
plan's list of claims that the design cannot decide (``python -m singledir.pipeline.plan``
prints it; :func:`undecidable` is what a ``--json`` plan puts under ``undecidable_claims``)."""

from __future__ import annotations

from singledir.models.nets import CONVNET_CHANNELS
from singledir.pipeline.plan import (FIGURES, enabled_families, experiment_specs, figure_targets,
                                     parse_selection, _same, GRID_VARIABLES)
from singledir.stats.design import ASSUMPTIONS, undecidable_claims


def _units(spec: dict):
    """Analysed units of one net (unit_layers: all): None where unknown without building it."""
    model = spec["model"]
    if model.get("arch") == "mlp":
        return int(sum(model.get("hidden", [])))
    if model.get("arch") == "convnet":
        return int(sum(max(1, int(round(c * float(model.get("width", 1.0))))) for c in CONVNET_CHANNELS))
    return None


def _record(spec: dict) -> dict:
    train, model = spec["train"], spec["model"]
    reg = train.get("regularizer") or "none"
    snaps = train.get("snapshot_epochs") or []
    gaps = [b - a for a, b in zip(snaps, snaps[1:])]
    condition = (reg if reg != "none" else "batch norm" if spec["experiment"] == "reg_batchnorm"
                 else "dropout" if model.get("dropout") else "plain")
    return {"model": spec["id"], "experiment": spec["experiment"], "fraction": float(spec["labels"]["fraction"]),
            "seed": train.get("seed"), "dropout": model.get("dropout", 0.0), "batch_norm": model.get("batch_norm"),
            "lr": train.get("lr"), "batch_size": train.get("batch_size"), "strength": train.get("reg_strength"),
            "regularizer": reg, "condition": condition, "units": _units(spec), "epochs": train.get("epochs"),
            "snapshots": len(snaps), "snapshot_spacing": max(gaps) if gaps else None}


def config_design(config: dict) -> dict:
    """{family: {figure: [network record]}} of every figure the config draws (see
    :func:`singledir.stats.design.undecidable_claims` for the record's keys)."""
    drawn = set(figure_targets(config, ""))
    out: dict = {}
    for family in enabled_families(config):
        specs_of: dict = {}
        for fig, needs in FIGURES.get(family, {}).items():
            if f"/{fig}_{family}.pdf" not in drawn:
                continue
            nets = []
            for need in needs:
                exp, where = parse_selection(need)
                if exp not in specs_of:
                    specs_of[exp] = experiment_specs(config, family, exp)
                for spec in specs_of[exp].values():
                    if all(_same(spec[GRID_VARIABLES[v][0]].get(GRID_VARIABLES[v][1]), val) for v, val in where.items()):
                        nets.append(_record(spec))
            out.setdefault(family, {})[fig] = list({n["model"]: n for n in nets}.values())
    return out


def undecidable(config: dict) -> list[dict]:
    """[{claim, figure, family, why}]: the claims this config's design cannot decide."""
    return undecidable_claims(config_design(config))


def summary_lines(config: dict) -> list[str]:
    """The plan's text about decidability: each undecidable claim and why, and the variance
    assumptions behind the projected CI widths."""
    bad = undecidable(config)
    lines = [f"  claims the design cannot decide: {len(bad) or 'none'}"]
    lines += [f"    {b['claim']} ({b['family']}, Fig. {b['figure']}): {b['why']}" for b in bad]
    lines.append("    (projected CI widths assume: " + "; ".join(ASSUMPTIONS) + ")")
    return lines
