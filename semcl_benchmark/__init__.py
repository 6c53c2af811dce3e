"""The low-label benchmark of the bundle: does semantic-aware contrastive pretraining help, and by how much?

Beside ``semcl_components`` (what the bundle's configs use, shipped in the model-zoo zip), never shipped.

Modules:
    protocol: arms and sizes as data (``protocol.yaml``; ``--protocol FILE`` extends them).
    plan: the runs of a size, their bundle workflow calls, and a check of every call before any work.
    datasets: the size's phantoms or the user's own dataset (``--dataset_dir``), and every seed's datalist.
    splits: seeds as draws: a fixed test and validation set, each seed's labelled volumes and pretraining pool.
    stages: how each stage's run is done and what its result holds.
    atlas: the atlas baseline (a majority vote of the seed's labelled maps, registered; no training).
    snapshots: test Dice at fixed fractions of scratch's budget (time to accuracy).
    runner: the schedule: unfinished runs in parallel, each after the runs it needs, resumable.
    run_records: the result files' versioned schema (run key, settings, draw, budget, result, provenance) and their
        reader (v2's files: the draw reconstructed from the splits).
    results: the result store, the workflows' CSV outputs, provenance (code version, a clean tree, machine).
    report: the Markdown report and plots, from the result files alone (verdict, diagnosis, tables, plots; v2:
        endpoints, time to accuracy, baselines at their best, provenance, the testbed's difficulty criteria).
    statistics: two-level bootstrap intervals and the paired Wilcoxon test, the training run as the unit.
    step: the micro-benchmark of one training step of each embedding mode against a segmentation step.
    demo: one seed of the benchmark's protocol, both arms side by side (the README's main command).
    cli: the command line of ``scripts/benchmark.py`` and ``python -m semcl_benchmark``.
"""
