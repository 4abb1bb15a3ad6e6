"""Drawing2Map: the Seg2Sat web UI (Flask app factory, JSON API, one page with a canvas editor).

``create_app(config)`` builds the app from the defaults, then the environment (the shared
``SEG2SAT_*`` settings of :class:`seg2sat.settings.Settings` and the UI's own
``SEG2SAT_UI_*``, see :mod:`.config`), then ``config``. The page and its JavaScript are
plain files in ``templates/`` and ``static/``: nothing to build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    """Build the UI app (see :func:`.app.create_app`).

    Flask is imported here, not at package import, so that registering ``seg2sat ui`` does not
    cost every ``seg2sat`` command Flask's start-up time.
    """
    from .app import create_app as build

    return build(config)


__all__ = ["create_app"]
