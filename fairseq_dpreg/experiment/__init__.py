"""The experiment runner behind ``scripts/experiment.py GRID``: conditions x seeds through the project's own
recipes (``examples/*/train.sh`` then ``evaluate.sh``), resumable, then one table of paired statistics.

- ``grid``: load and check the grid file (YAML or JSON).
- ``runner``: the runs, their commands, scheduling over jobs/GPUs, resume after an interruption.
- ``logs``: fairseq's JSON training log (train.log) as records keyed by update.
- ``stats``: mean, sd, t intervals, paired differences, Holm, Wilcoxon, minimum detectable effect.
- ``report``: the results table (Markdown and JSON) and the plots.
- ``bench``: the grid's conditions timed side by side on the same batches (``scripts/bench_grid.py``).
- ``archive``: finished runs kept apart as one CONDITION-seedS.json each (docs/measured/), and put back.
"""
