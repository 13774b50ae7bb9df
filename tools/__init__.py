"""Developer tools the Makefile runs (not shipped in the wheel): ``check_imports``."""

from __future__ import annotations
