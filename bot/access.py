"""The access feature's services (issue 7), by the names handlers ask for them.

`passes`, `access`, `duty`, `posters` are campus services; `pass_cards` and `guard_tags` also
talk to the WeChat API (uploads, user tags), so they exist only where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.guardtags import GuardTagger, MenuAPI
from bot.keyspace import Keyspace
from bot.kv import KV
from bot.passcards import PassCards, Uploader
from bot.settings import Settings
from campus.access.duty import GuardDuty
from campus.access.gate import AccessService
from campus.access.issued import IssuedCodes
from campus.access.keys import KeyRing
from campus.access.passes import PassService
from campus.access.places import PlaceDirectory
from campus.access.policies import parse_policies
from campus.access.posters import PosterBook
from campus.secrets import DataVault


def key_ring(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], vault: DataVault, clock: Clock
) -> KeyRing:
    return KeyRing(
        sessions,
        vault,
        campus=settings.wechat_appid,
        max_validity=settings.pass_code_ttl,
        monotonic=clock.monotonic,
        wall=clock.time,
    )


def access_services(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    kv: KV,
    keys: Keyspace,
    clock: Clock,
    vault: DataVault,
    rules_sections: Mapping[str, Any],
    source: str,
) -> dict[str, Any]:
    # A bad policy stops start-up with an error naming the policy and the field.
    policies = parse_policies(rules_sections.get("policies"), source)
    ring = key_ring(settings, sessions, vault, clock)
    passes = PassService(
        sessions,
        ring,
        clock,
        validity=settings.pass_code_ttl,
        issued=IssuedCodes(kv, keys, ring),
    )
    places = PlaceDirectory(sessions, clock.monotonic)
    return {
        "passes": passes,
        "access": AccessService(sessions, passes, policies, places, clock, settings.tz),
        "duty": GuardDuty(kv, keys, shift=settings.guard_shift_hours * 3600),
        "posters": PosterBook(sessions),
    }


class ChatAPI(Uploader, MenuAPI, Protocol):
    """What the chat services need of bot.wechat.api.WeChatAPI."""


def chat_services(
    settings: Settings,
    services: Mapping[str, Any],
    api: ChatAPI,
    kv: KV,
    keys: Keyspace,
    clock: Clock,
) -> dict[str, Any]:
    return {
        "pass_cards": PassCards(services["passes"], api, kv, keys, settings.tz, clock),
        "guard_tags": GuardTagger(api, kv, keys),
    }
