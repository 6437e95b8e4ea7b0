"""Figs. 7 and A4 (a MNIST, b-c CIFAR-10, d-e ImageNet): a unit statistic (Fig. 7: class
selectivity; Fig. A4: mutual information; the panel's ``predictor`` param) vs the impact of
ablating each unit alone on the test loss, with Spearman's r and p (bootstrap CI over units),
pooled and per layer. The drawing: singledir.figures.unit_importance (MNIST and CIFAR-10 one
scatter coloured by layer; ImageNet the pooled scatter beside r per layer).
Nets that failed to train (singledir.stats.net_tables.training_failed: training accuracy
within 5 points of chance, or a non-finite loss) are left out, counted
(networks_failed_excluded) and named under the figure; with none left (e.g. the only
net of Fig. 7a failed) the figure says so."""
import sys

import pandas as pd

from singledir.figures import plotting, unit_importance
from singledir.io import save_csv
from singledir.stats.net_tables import data_class_count, failed_stat_rows, final_accuracies, keep_trained
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    units = pd.concat([pd.read_csv(f) for f in sm.input.units])
    nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    units, note = keep_trained(units, nets)
    if units.empty:
        plotting.no_net_left(sm.output, sm.params.figure["title"], sm.params.scale, sm.params.label, note,
                             failed_stat_rows(nets), units)
        sys.exit(0)  # nothing else to draw or test
    save_csv(units, sm.output.csv)
    fig, rows = unit_importance.draw(units, sm.params.figure, sm.params.scale, sm.params.label, sm.params.bootstrap,
                                     sm.params.seed)
    plotting.layout_with_note(fig, note)
    plotting.save(fig, sm.output.pdf)
    save_csv(pd.DataFrame(rows + failed_stat_rows(nets)), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(f"{len(units)} units in {units['layer'].nunique()} layers")
    print(table_summary(sm.output.stats))
