"""The HTTP API: OpenAI-compatible image endpoints, users and keys, limits, assets and operations.

`atelier serve` runs it on one machine with nothing else to install: SQLite for metadata (Alembic
migrations from the first table on), the local filesystem for images, the model loaded once at
startup. It talks to the model only through atelier.pipeline (tests/test_layers.py). Importing this
package does not import torch: only the app's startup and the worker that runs the pipeline do.
"""
