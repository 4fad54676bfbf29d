"""The REST API under ``/api/v1``: flask-smorest ``Api``, keys, problems, limits."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the API's blueprints (filled in by the API work)."""
