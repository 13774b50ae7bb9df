"""The gateway's OpenAPI document, served at ``GET /openapi.json``.

Modules, one concept each: ``components`` (references, bodies, shared parameters, the error
dialects, security schemes); one per face or group of faces: ``jobs`` (with ``job_objects``),
``catalog`` (models), ``keys``, ``backserv``, ``tasks`` (with ``task_objects``),
``operations`` (probes, files, web pages); and ``document``, which assembles them and serves
the result. ``tests/api/test_openapi.py`` checks that every mounted route is documented.
"""

from __future__ import annotations

from gateway.api.openapi.document import DocumentOptions, OpenAPIDocument, build_document

__all__ = ["DocumentOptions", "OpenAPIDocument", "build_document"]
