"""Returns tables (see storage/models.py for the shared base and the core tables)."""

from __future__ import annotations
