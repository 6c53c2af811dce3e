"""Deterministic synthetic multi-organ abdominal CT phantoms, the project's embedded data (no download, no patients).

Modules:
    phantoms: the dataset writer (MSD layout, datalist, preview) and ``python -m semcl_phantoms.phantoms``.
    simple_phantom: the first generator (ellipsoid organs, three discrete contrast phases), kept byte for byte.
    realistic_phantom: the ``realistic`` generator; its parts: realistic_subject (one subject's draws),
        realistic_painter (partial-volume painting of placed structures), realistic_body (body wall, lungs, bones),
        realistic_anatomy (structure templates), realistic_preset (every parameter).
    anatomy, enhancement, implicit_shapes, phantom_subject: organ labels and tissue HU, contrast enhancement curves,
        signed-distance shapes on a voxel grid, the generated subject.
    datalists: the fixed low-label splits written beside a dataset. preview: PNG slices with label overlays.

The package imports nothing from ``semcl_components``, ``semcl_tools`` or ``semcl_benchmark``
(``tests/test_import_graph.py``): the bundle's runtime imports it when it writes its demonstration data, and the
model-zoo zip carries it in ``scripts/`` beside ``semcl_components``.
"""
