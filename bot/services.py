"""The campus services handlers may ask for by parameter name, built once per app."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.access import ChatAPI, access_services, chat_services
from bot.clock import Clock, SystemClock
from bot.keyspace import Keyspace
from bot.kv import KV
from bot.settings import Settings
from campus.accounts import AccountService
from campus.binding import BindingService
from campus.broadcast import BroadcastService
from campus.dashboard.service import DashboardService
from campus.health.services import Words, health_rules, health_services
from campus.links import LinkSigner
from campus.meals.ordering import MealService
from campus.meals.rules import parse_meal_rules
from campus.notifications import Notifications, Schedule
from campus.registration import RegistrationService
from campus.registration import Words as RegistrationWords
from campus.registry.formats import CATEGORIES
from campus.returns.approvals import Words as ReturnWords
from campus.returns.services import return_services
from campus.rules import load_rules
from campus.secrets import DataVault
from campus.tracing.services import tracing_services
from handlers import COMMANDS
from handlers import keywords as kw
from handlers.decisions import CATEGORY_NAMES


def build_services(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    kv: KV,
    keys: Keyspace,
    clock: Clock | None = None,
    api: ChatAPI | None = None,
) -> dict[str, Any]:
    vault = DataVault.from_setting(settings.data_key)
    rules = load_rules(settings.rules_file)  # a bad rules file stops start-up, naming the entry
    notifications = Notifications(sessions, Schedule(rules.quiet_hours, settings.tz))
    clock = clock or SystemClock()
    services: dict[str, Any] = {
        "settings": settings,
        "commands": COMMANDS,
        "accounts": AccountService(sessions, settings.default_locale, kv, keys, vault),
        "binding": BindingService(
            sessions, vault, kv, keys, settings.bind_failures_per_hour, notifications
        ),
        "vault": vault,
        "notifications": notifications,
        "broadcasts": BroadcastService(sessions, notifications, clock, CATEGORIES),
        "registration": RegistrationService(
            sessions,
            vault,
            notifications,
            clock,
            settings.tz,
            RegistrationWords(kw.APPROVE_REG.text, kw.REJECT_REG.text, CATEGORY_NAMES),
        ),
    }
    services["dashboard"] = DashboardService(
        sessions, LinkSigner(settings.data_key), clock, settings.tz, settings.public_url
    )
    services.update(
        access_services(settings, sessions, kv, keys, clock, vault, rules.sections, rules.source)
    )
    services.update(
        return_services(
            sessions,
            notifications,
            rules.sections,
            rules.source,
            clock,
            settings.tz,
            ReturnWords(kw.APPROVE_RETURN.text, kw.REJECT_RETURN.text),
        )
    )
    services["access"].gate_hook = services["arrivals"]  # arrival at a gate (issue 8)
    services.update(
        health_services(
            sessions,
            health_rules(rules.sections, rules.source),  # checked now: a bad rule stops start-up
            notifications,
            clock,
            settings.tz,
            Words(checkin=kw.CHECKIN, ack=kw.ACK, set_status=kw.SET_STATUS),
        )
    )
    # Tracing and incidents (issue 10): after health, whose rules and warnings they use.
    services.update(
        tracing_services(settings, sessions, services, rules.sections, rules.source, clock)
    )
    # A bad meals section stops start-up, naming the entry.
    meal_rules = parse_meal_rules(rules.sections.get("meals"), rules.source)
    services["meals"] = MealService(sessions, meal_rules, clock, settings.tz)
    if api is not None:  # uploads and user tags need the WeChat API
        services.update(chat_services(settings, services, api, kv, keys, clock))
    return services
