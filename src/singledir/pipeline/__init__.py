"""What a config asks for and how a job runs: the workflow's planning side.

- :mod:`~singledir.pipeline.plan`          models, experiments and figures of a config; the plan summary
  (printed by ``python -m singledir.pipeline.plan CONFIG``, the package's ``__main__``);
- :mod:`~singledir.pipeline.config_check`  config loading and validation against the JSON schema;
- :mod:`~singledir.pipeline.config_docs`   config/README.md, every config key, generated from the schema;
- :mod:`~singledir.pipeline.cost`          FLOP-counted cost model;
- :mod:`~singledir.pipeline.submissions`   cluster job groups and the number of SLURM submissions;
- :mod:`~singledir.pipeline.params`        what a rule gets as params (result-defining keys) and the
  speed knobs its script reads from the config;
- :mod:`~singledir.pipeline.runtime`       helpers of the workflow scripts (device, torch setup, benchmark files);
- :mod:`~singledir.pipeline.jobs`          the opening of every per-model analysis script (model, data, options);
- :mod:`~singledir.pipeline.logs`          a job's log file and summaries of what it read and wrote (torch-free);
- :mod:`~singledir.pipeline.gpu`           one CUDA device per job on a multi-GPU machine.
"""
