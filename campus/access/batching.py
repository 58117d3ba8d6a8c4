"""Guard scans batch through storage/batching.py (kept here for existing imports)."""

from storage.batching import Batcher

__all__ = ["Batcher"]
