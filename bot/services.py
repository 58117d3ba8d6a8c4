"""The campus services handlers may ask for by parameter name, built once per app."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.keyspace import Keyspace
from bot.kv import KV
from bot.settings import Settings
from campus.accounts import AccountService
from campus.binding import BindingService
from campus.secrets import DataVault
from handlers import COMMANDS


def build_services(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], kv: KV, keys: Keyspace
) -> dict[str, Any]:
    vault = DataVault.from_setting(settings.data_key)
    return {
        "settings": settings,
        "commands": COMMANDS,
        "accounts": AccountService(sessions, settings.default_locale),
        "binding": BindingService(sessions, vault, kv, keys, settings.bind_failures_per_hour),
        "vault": vault,
    }
