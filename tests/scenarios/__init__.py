"""Slow end-to-end scenarios: whole gateways, mostly real ``backserv serve`` processes.

``kill -9`` and SIGTERM mid-flight (test_crash_recovery), replicas on one PostgreSQL database
(test_replicas), a flooding neighbour (test_flood), the hosted providers through the fal and
Replicate emulators (test_hosted_e2e), the local provider on a tiny pipeline (test_local_e2e),
attacks on the HTTP edge (test_edge) and the documented polling script (test_seed_example).
Together they take most of the suite's time; the unit tests beside the packages do not.

``pytest tests/scenarios`` runs only these; ``pytest --ignore=tests/scenarios`` runs only the
fast tests; plain ``pytest`` (``make test``) runs both. Shared helpers stay where every test
finds them: ``tests/server.py`` (a server subprocess), ``tests/conftest.py``,
``tests/postgres.py`` and ``tests/emulators/``.
"""

from __future__ import annotations
