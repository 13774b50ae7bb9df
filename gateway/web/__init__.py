"""The gateway's web pages: catalog browser, model pages, playground and jobs page."""

from __future__ import annotations

from gateway.web.routes import WebPages

__all__ = ["WebPages"]
