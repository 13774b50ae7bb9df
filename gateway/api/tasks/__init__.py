"""The Tasks API face (seed: tasks-api-openapi.txt), under ``/api/v1/tasks``.

Modules, one concept each: ``routes`` (the endpoints), ``jwt`` (HS256 bearer tokens),
``ids`` (task UUID <-> job id), ``schemas`` (the document's request schemas and enums),
``inputs`` (task fields -> a kind's input), ``routing`` (which catalog model runs a task),
``create`` / ``update`` (POST and PUT), ``listing`` (filters and offset paging),
``render`` (a job as a ``…TaskPublic``), ``errors`` (the document's error dialect) and
``webhook_secret`` (the secret its webhooks are signed with, for a JWT client).
"""

from __future__ import annotations

from gateway.api.tasks.routes import TasksAPI

__all__ = ["TasksAPI"]
