"""Cohort screening: ``osteoai batch`` runs the single-study pipeline over many studies, on local processes
or a Dask cluster, one atomic results folder per study, then gathers a cohort table and a summary.

Modules: ``discover`` (inputs -> studies), ``study`` (one study in a worker, atomic publish, resume check),
``memory`` (per-study memory estimate), ``local`` and ``dask_runner`` (executors), ``cohort`` (tables),
``summary`` (counts, timing, plots), ``command`` (the CLI).
"""
