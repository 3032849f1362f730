"""Page models: each page's state, project edits and background jobs, without Qt.

A page is widgets bound to its model. The page builds and lays out widgets, forwards what the user
does to the model and shows what the model announces (``Event``s carrying plain data). The model
holds the page's state, changes the project through its host (``AppState`` in the app; ``Session``,
the same interface without Qt, in tests) as undoable ``ProjectEdit``s, and runs its background work
as plain functions with progress and cancel through a job runner (``ui.worker.run_task`` in the app,
a synchronous one in tests). Nothing in this package imports Qt (tests/test_layering.py keeps it so),
so models are tested without a QApplication: tests/models.
"""
