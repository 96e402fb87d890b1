"""Storage: the only package that speaks SQL. ``Store`` owns every table; migrations are apart."""

from bot.store.migrations import migrations
from bot.store.store import StorageError, Store, StoredInbound, now

__all__ = ["StorageError", "Store", "StoredInbound", "migrations", "now"]
