"""The repository's tools that neither ship in the bundle nor belong to the benchmark.

Modules:
    repository: where the bundle and its configs are in the source checkout.
    bundle_run: running bundle workflows as a user types them (``python -m monai.bundle run``), logged and measured.
    bundle_configs: the bundle's workflow configs assembled from ``config_parts/`` (``scripts/assemble_configs.py``).
    zoo_export: the model-zoo artifact (``scripts/export_bundle.py``).
    monailabel: serving the bundle with MONAI Label's stock app (``scripts/monailabel_server.py``).
    monailabel_refine: stage 2 of the cascade as a second MONAI Label model, refining the label a request uploads.
    monailabel_origins: MONAI Label's server app behind the helper's request guard (other origins and hosts, path-like
        ids, uploads that are not medical images and changes to the bundle's files refused).
    monailabel_requests: what the guard lets through: ids, uploaded files (NIfTI/NRRD/DICOM) and Host headers.
"""
