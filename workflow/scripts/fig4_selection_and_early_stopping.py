"""Fig. 4: single-direction reliance as a signal for early stopping (a, MNIST) and for
hyperparameter selection (b-c, CIFAR-10); each family draws its panels.

(a) MNIST: train and test loss with the normalized ablation AUC over training.

The AUC line starts at the epoch-0 snapshot when there is one (an untrained net at
chance: its flat curve scores ~1, which is why the statistics use trained snapshots
only). The loss axis shows every point.

Statistics (one network; its ablation orderings are the resampling unit):
epoch_auc_peak (epoch of the highest mean AUC), epoch_min_test_loss,
epoch_auc_peak_minus_min_test_loss (CI: orderings resampled, the peak recomputed on
each resample; the test loss is one deterministic curve), snapshot_interval_at_events
(the largest gap between snapshots next to the peak or the minimum: what the snapshot
schedule can resolve), training_epochs, and spearman_auc_vs_test_loss across trained
snapshots (moving-block bootstrap over snapshots in time order: they are autocorrelated).

(b-c) CIFAR-10: ablation AUC as a signal for early stopping and model selection.

(b) One net's training snapshots: normalized AUC (mean over orderings) against test
loss, coloured by epoch. The untrained snapshot (epoch 0, chance accuracy, where a
normalized AUC means nothing) is left out. Statistic: spearman_auc_vs_test_loss
(moving-block bootstrap over snapshots; paper -0.728).

(c) A learning rate x batch size sweep: AUC against test accuracy, one point per net.
Statistics: spearman_auc_vs_test_accuracy over nets (CI resampling settings, each with all
its repeats; permutation p over nets; paper 0.914:
singledir.stats.model_selection.spearman_over_settings) and the model-selection statistic
of section 3.2 on the settings (repeats averaged), see singledir.stats.model_selection:
selection_top<k>_percent, selection_gap_to_best_percent (mean) and
selection_gap_to_best_std_percent (std over subselections), each with its chance level, a
permutation null (AUC shuffled across settings) and a CI resampling the settings;
selection_subset_size, selection_settings_designed (the sweep's settings as configured,
counted before any net is left out: the design the claims compare with the paper's 48 of
96) and selection_settings (the settings the selection used). Nets that failed to train
(singledir.stats.net_tables.training_failed) are excluded, counted
(networks_failed_excluded) and named under the figure; a setting stays while one of its
repeats trained. Raw (unnormalized) areas are in the CSV. With too few settings left for
the subselection, the selection statistics are not written (the claims say so).

Fig. 4a-b rest on one early-stopping net, judged like the others: if it failed to train,
its snapshots are left out (Fig. 4a then draws only that sentence, "the only net failed to
train: ..."; Fig. 4b is empty and its statistic nan) and stopping_net_failed_excluded (with
the note) and stopping_net_used say so; the claims of 4a-b are then inconclusive."""
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.inference import bootstrap_ci, result, spearman_over_time, stat_row
from singledir.stats.model_selection import selection_null, setting_means, spearman_over_settings
from singledir.stats.net_tables import (data_class_count, excluded_note, failed_stat_rows, final_accuracies,
                                       final_performance, keep_trained, mean_auc, spec_value, without_failed)
from singledir.pipeline.logs import io_summary, log_to, table_summary


def early_stopping_4a(sm):
    boot, seed = sm.params.bootstrap, sm.params.seed
    t = pd.concat([pd.read_csv(f) for f in sm.input.snapshots])
    stopping = final_accuracies(sm.input.stopping_histories, data_class_count(sm.input.data))
    t, note = keep_trained(t, stopping)
    stopping_rows = failed_stat_rows(stopping, name="stopping_net")
    if t.empty:
        plotting.no_net_left(sm.output, "Ablation AUC over training", sm.params.scale, sm.params.label, note,
                             stopping_rows, t)
        return
    save_csv(t, sm.output.csv)
    model = t["model"].iloc[0]
    t = t[t["model"] == model]
    per_epoch = t.groupby("epoch").agg(auc=("auc", "mean"), auc_std=("auc", "std"), train_loss=("train_loss", "first"),
                                       test_loss=("test_loss", "first")).reset_index()
    hist = per_epoch.dropna(subset=["test_loss"])

    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    ax.plot(hist["epoch"], hist["train_loss"], color="tab:blue", label="Train loss")
    ax.plot(hist["epoch"], hist["test_loss"], color="tab:purple", label="Test loss")
    top = float(np.nanmax(hist[["train_loss", "test_loss"]].to_numpy())) if len(hist) else 1.0
    ax.set_ylim(0, max(1e-3, top * 1.05))  # every point visible, the first (highest) ones included
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax2 = ax.twinx()
    ax2.spines["right"].set_visible(True)
    ax2.plot(per_epoch["epoch"], per_epoch["auc"], color="tab:green", label="AUC", marker="o", ms=3)
    ax2.fill_between(per_epoch["epoch"], per_epoch["auc"] - per_epoch["auc_std"], per_epoch["auc"] + per_epoch["auc_std"],
                     color="tab:green", alpha=0.2, lw=0)
    ax2.set_ylabel("Normalized ablation AUC", color="tab:green")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [l.get_label() for l in lines], fontsize=7, loc="center right")
    plotting.finish(fig, "Ablation AUC over training", sm.params.scale, sm.params.label, sm.output.pdf, note=note)

    trained = per_epoch[per_epoch["epoch"] > 0].dropna(subset=["test_loss"])
    epochs = trained["epoch"].to_numpy(float)
    peak = float(epochs[int(np.argmax(trained["auc"].to_numpy()))])
    min_test = float(epochs[int(np.argmin(trained["test_loss"].to_numpy()))])
    by_ordering = t[t["epoch"].isin(trained["epoch"])].pivot_table(index="ordering", columns="epoch", values="auc")
    by_ordering = by_ordering.reindex(columns=trained["epoch"]).to_numpy(float)


    def peak_minus_min(rows):
        return float(epochs[int(np.nanargmax(np.nanmean(rows, axis=0)))] - min_test)


    diff_ci = bootstrap_ci(peak_minus_min, by_ordering, n_boot=boot, seed=seed)
    all_epochs = np.sort(per_epoch["epoch"].to_numpy(float))
    gaps = np.diff(all_epochs)


    def gap_at(e):
        i = int(np.searchsorted(all_epochs, e))
        near = [gaps[j] for j in (i - 1, i) if 0 <= j < len(gaps)]
        return max(near) if near else float("nan")


    n_epochs = float(all_epochs[-1])  # the schedule always snapshots the last epoch (singledir.pipeline.plan)
    rows = [
        stat_row("epoch_auc_peak", result(peak, n=len(trained), unit="snapshots")),
        stat_row("epoch_min_test_loss", result(min_test, n=len(trained), unit="snapshots")),
        stat_row("epoch_auc_peak_minus_min_test_loss",
                 result(peak - min_test, diff_ci, len(by_ordering), unit="ablation orderings")),
        stat_row("snapshot_interval_at_events", result(max(gap_at(peak), gap_at(min_test)), n=len(all_epochs),
                                                       unit="snapshots")),
        stat_row("training_epochs", result(n_epochs, n=1, unit="networks")),
        stat_row("spearman_auc_vs_test_loss", spearman_over_time(trained["auc"], trained["test_loss"], boot, seed)),
    ] + stopping_rows
    save_csv(pd.DataFrame(rows), sm.output.stats)


def model_selection_4bc(sm):
    specs = sm.params.specs
    boot, seed = sm.params.bootstrap, sm.params.seed
    cfg = sm.params.figure

    # (b) snapshots of one net
    snap = pd.concat([pd.read_csv(f) for f in sm.input.snapshots], ignore_index=True)
    stopping = final_accuracies(sm.input.stopping_histories, data_class_count(sm.input.data))
    note_b = excluded_note(stopping)
    print(note_b or "the early-stopping net trained")
    snap = without_failed(snap, stopping)
    per_epoch = (snap.groupby(["model", "epoch"])
                 .agg(auc=("auc", "mean"), auc_std=("auc", "std"), train_loss=("train_loss", "first"),
                      test_loss=("test_loss", "first"), test_accuracy=("test_accuracy", "first"))
                 .reset_index())
    trained = per_epoch[per_epoch["epoch"] > 0].dropna(subset=["test_loss"])
    r_b = spearman_over_time(trained["auc"], trained["test_loss"], boot, seed)  # block bootstrap over snapshots

    # (c) the sweep
    curves = pd.concat([pd.read_csv(f) for f in sm.input.curves], ignore_index=True)
    nets = final_performance(sm.input.histories, data_class_count(sm.input.data)).merge(mean_auc(curves), on="model")
    note_c = excluded_note(nets)
    print(note_c or "no net of the sweep failed to train")
    note = "; ".join(f"({panel}) {n}" for panel, n in (("b", note_b), ("c", note_c)) if n)
    nets["lr"] = spec_value(nets["model"], specs, "train", "lr")
    nets["batch_size"] = spec_value(nets["model"], specs, "train", "batch_size")
    nets["seed"] = spec_value(nets["model"], specs, "train", "seed")
    ok = nets[~nets["failed"]]
    r_c = spearman_over_settings(ok, ["lr", "batch_size"], n_boot=boot, seed=seed)  # CI: settings resampled
    # the design is the sweep as configured: counted before failed nets are left out, so a
    # failed net never turns the paper's 48 of 96 into another design (issue 30)
    designed = len(setting_means(nets, ["lr", "batch_size"]))
    settings = setting_means(ok, ["lr", "batch_size"])
    n_settings = len(settings)
    subset = int(cfg.get("subset_size", max(1, designed // 2)))
    if subset > designed:
        raise ValueError(f"families.cifar10.figures.fig4.subset_size: {subset} is more than the {designed} "
                         f"settings of the sweep experiment; lower it (paper: 48 of 96)")
    few = subset > n_settings  # failed nets took the settings away
    if few:
        print(f"only {n_settings} of {designed} settings left once failed nets are excluded, fewer than subset_size "
              f"{subset}: no selection statistics")
    elif n_settings < designed:
        print(f"{n_settings} of the sweep's {designed} settings left once failed nets are excluded")
    top = list(cfg.get("top", [1, 5, 10]))
    sel = None if few else selection_null(settings["auc"], settings["test_accuracy"], subset,
                                          int(cfg.get("subsets", 10000)), top, n_perm=boot, seed=seed,
                                          n_boot=boot)  # CI: the grid's settings resampled

    table = pd.concat([
        trained.assign(panel="b"),
        nets.drop(columns=["epoch"]).assign(panel="c"),
    ], ignore_index=True)
    save_csv(table, sm.output.csv)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    ax.plot(trained["test_loss"], trained["auc"], color="0.75", lw=0.8, zorder=1)
    sc = ax.scatter(trained["test_loss"], trained["auc"], c=trained["epoch"], cmap="viridis", s=18, zorder=2,
                    edgecolor="k", linewidth=0.3)
    fig.colorbar(sc, ax=ax, pad=0.01).set_label("Epoch")
    ax.set_title(f"Spearman r = {r_b['value']:.3f}, {plotting.count(r_b['n'], 'snapshot')}\n"
                 f"95% CI [{r_b['ci_low']:.3f}, {r_b['ci_high']:.3f}]", fontsize=7, loc="right")
    ax.set_xlabel("Test loss")
    ax.set_ylabel("Area under ablation curve (normalized)")
    ax.set_title("b", loc="left", fontweight="bold")

    lrs = np.asarray(nets["lr"], dtype=float)
    norm = mcolors.LogNorm(lrs.min(), lrs.max()) if lrs.min() < lrs.max() else None
    markers = dict(zip(sorted(nets["batch_size"].unique()), "osD^vP*Xhp<>"))
    for bs, mk in markers.items():
        g = ok[ok["batch_size"] == bs]
        sc2 = ax2.scatter(g["test_accuracy"], g["auc"], c=np.asarray(g["lr"], float), cmap="viridis", norm=norm,
                          marker=mk, s=18, edgecolor="k", linewidth=0.3, label=f"batch {bs}")
    fig.colorbar(sc2, ax=ax2, pad=0.01).set_label("Learning rate")
    if len(markers) <= 8:
        ax2.legend(fontsize=6, loc="lower right", markerscale=0.8)
    if sel:
        top_txt = " / ".join(f"{sel[f'top{k}_percent']['value']:.0f}" for k in top)
        chance_txt = " / ".join(f"{sel[f'top{k}_percent']['chance']:.0f}" for k in top)
        of = f"{n_settings} settings" if n_settings == designed else f"the {n_settings} of {designed} settings left"
        selection_txt = (f"Max-AUC pick of {subset} of {of} is in the top {'/'.join(map(str, top))}: "
                         f"{top_txt} % of subsets (chance {chance_txt});\nits test accuracy is "
                         f"{sel['gap_mean_percent']['value']:.1f} +/- {sel['gap_std_percent']['value']:.1f} % below "
                         "the subset's best")
    else:
        selection_txt = (f"No model selection: {n_settings} of {designed} settings left, fewer than the subset size "
                         f"{subset}")
    ax2.set_title(f"Spearman r = {r_c['value']:.3f}, p = {r_c['p']:.2g}, {plotting.count(r_c['n'])}\n"
                  f"95% CI [{r_c['ci_low']:.3f}, {r_c['ci_high']:.3f}] (settings resampled)", fontsize=7, loc="right")
    # The model-selection statistic, under the panel (section 3.2).
    ax2.text(0.5, -0.3, selection_txt, fontsize=7, ha="center", va="top", transform=ax2.transAxes)
    ax2.set_xlabel("Test accuracy")
    ax2.set_ylabel("Area under ablation curve (normalized)")
    ax2.set_title("c", loc="left", fontweight="bold")
    plotting.finish(fig, "Ablation AUC over training (b) and across a hyperparameter sweep (c)",
                    sm.params.scale, sm.params.label, sm.output.pdf, note=note)

    rows = [stat_row("spearman_auc_vs_test_loss", r_b), stat_row("spearman_auc_vs_test_accuracy", r_c)]
    for k in top if sel else []:
        rows.append(stat_row(f"selection_top{k}_percent", sel[f"top{k}_percent"]))
    if sel:
        rows.append(stat_row("selection_gap_to_best_percent", sel["gap_mean_percent"]))
        rows.append(stat_row("selection_gap_to_best_std_percent", sel["gap_std_percent"]))
    # settings per random subselection (n: settings in the sweep): with at most k of them,
    # every pick is trivially in the top k
    rows.append(stat_row("selection_subset_size", {"value": subset, "n": n_settings, "unit": "settings"}))
    rows.append(stat_row("selection_settings", {"value": n_settings, "n": n_settings, "unit": "settings"}))
    rows.append(stat_row("selection_settings_designed", {"value": designed, "n": len(nets), "unit": "networks"}))
    rows += failed_stat_rows(nets) + failed_stat_rows(stopping, name="stopping_net")
    save_csv(pd.DataFrame(rows), sm.output.stats)


DRAW = {"mnist": early_stopping_4a, "cifar10": model_selection_4bc}

sm = snakemake
with log_to(sm.log[0]):
    DRAW[sm.wildcards.family](sm)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
