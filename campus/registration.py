"""Self-registration of temporary persons by chat, the host's decision, and expiry.

An applicant (an unbound WeChat account) gives name, ID number, phone, category, the host's
person number, an optional home place and a number of days. That creates a `pending` Person
under the host's unit, with the host as its responsible person, and binds the applicant's
WeChat account to it. The host (or a responsible person of the unit) approves (→ active) or
rejects (→ left); the applicant hears either way. Nothing personal goes to the log.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, utcnow
from bot.i18n import Translate
from bot.replies import options
from campus import audit
from campus.identity import mask_id_number, mask_name, mask_phone
from campus.notifications import Notifications
from campus.registry import fields
from campus.secrets import DataVault
from storage.models import Person, Place, Unit, UnitResponsible, WeChatAccount

TEMPORARY_CATEGORIES = ("family", "contractor", "vendor", "partner", "resident", "temporary")
HOST_CATEGORIES = ("faculty", "staff")
MAX_DAYS = 180
REMIND_DAYS_BEFORE = 3
MAX_PENDING_SHOWN = 10

Invalid = fields.Invalid


class Outcome(Enum):
    REGISTERED = "registered"
    DUPLICATE = "duplicate"  # the same ID number is registered already
    BAD_HOST = "bad_host"  # no active faculty or staff person with that number
    BAD_PLACE = "bad_place"
    ACCOUNT_BOUND = "account_bound"  # this WeChat account is bound already


class Decision(Enum):
    APPROVED = "approved"
    REJECTED = "rejected"
    NOT_PENDING = "not_pending"  # decided before, or no such registration
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True, slots=True)
class Application:
    name: str
    id_number: str  # normalised
    phone: str  # normalised
    category: str
    host_no: str
    days: int
    place_code: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    masked_name: str
    category: str
    valid_until: date | None


@dataclass(frozen=True, slots=True)
class Overview:
    units: tuple[str, ...]  # codes of the units the person is directly responsible for
    by_category: dict[str, int]  # active persons in them and their sub-units
    bound: int  # of those, bound to WeChat
    pending: tuple[Pending, ...]


@dataclass(frozen=True, slots=True)
class Words:
    """The keywords a host taps to decide (built by the handlers, which own the keywords)."""

    approve: Callable[[str], str]  # locale → word
    reject: Callable[[str], str]
    categories: Mapping[str, str]  # category → its N_() label


def check_days(text: str) -> int:
    try:
        days = int(text.strip())
    except ValueError:
        raise Invalid("not a number") from None
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(f"not between 1 and {MAX_DAYS}")
    return days


def check_category(text: str) -> str:
    value = text.strip().casefold()
    if value not in TEMPORARY_CATEGORIES:
        raise Invalid("not a category of temporary person")
    return value


class RegistrationService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: DataVault,
        notifications: Notifications,
        clock: Clock,
        tz: ZoneInfo,
        words: Words,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._notifications = notifications
        self._clock = clock
        self._tz = tz
        self._words = words

    def today(self) -> date:
        return utcnow(self._clock).astimezone(self._tz).date()

    async def id_taken(self, id_number: str) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(Person.id)
                .where(Person.id_hash == self._vault.lookup_hash(id_number, "id"))
                .limit(1)
            )
        return found is not None

    async def host_ok(self, host_no: str) -> bool:
        async with self._sessions() as session:
            return await self._host(session, host_no) is not None

    async def place_ok(self, code: str) -> bool:
        try:
            value = fields.code(code.strip())
        except Invalid:
            return False
        async with self._sessions() as session:
            return await session.scalar(select(Place.id).where(Place.code == value)) is not None

    async def _host(self, session: AsyncSession, host_no: str) -> Person | None:
        try:
            number = fields.person_no(host_no.strip())
        except Invalid:
            return None
        host = await session.scalar(select(Person).where(Person.person_no == number))
        if host is None or host.state != "active" or host.category not in HOST_CATEGORIES:
            return None
        return host

    async def register(self, openid: str, app: Application) -> tuple[Outcome, int | None]:
        try:
            return await self._register(openid, app)
        except IntegrityError:  # the same account or person number in the same instant
            return Outcome.DUPLICATE, None

    async def _register(self, openid: str, app: Application) -> tuple[Outcome, int | None]:
        now = utcnow(self._clock)
        id_hash = self._vault.lookup_hash(app.id_number, "id")
        async with self._sessions.begin() as session:
            account = await session.get(WeChatAccount, openid, with_for_update=True)
            if account is not None and account.person_id is not None:
                return Outcome.ACCOUNT_BOUND, None
            taken = await session.scalar(select(Person.id).where(Person.id_hash == id_hash))
            if taken is not None:
                return Outcome.DUPLICATE, None
            host = await self._host(session, app.host_no)
            if host is None:
                return Outcome.BAD_HOST, None
            place_id = None
            if app.place_code:
                place_id = await session.scalar(
                    select(Place.id).where(Place.code == app.place_code)
                )
                if place_id is None:
                    return Outcome.BAD_PLACE, None
            locale = (account.locale if account is not None else None) or "zh_CN"
            person = Person(
                person_no="R" + secrets.token_hex(5).upper(),
                name=app.name,
                category=app.category,
                unit_id=host.unit_id,
                id_hash=id_hash,
                id_cipher=self._vault.encrypt(app.id_number),
                phone_cipher=self._vault.encrypt(app.phone),
                roles="",
                responsible_id=host.id,
                home_place_id=place_id,
                locale=locale,
                valid_until=self.today() + timedelta(days=app.days),
                state="pending",
            )
            session.add(person)
            await session.flush()
            if account is None:
                session.add(
                    WeChatAccount(
                        openid=openid, person_id=person.id, bound_at=now, last_seen_at=now
                    )
                )
            else:
                account.person_id = person.id
                account.bound_at = now
            audit.record(session, f"wechat:{openid}", "register", person.id, "self-registration")
            id_number, phone = app.id_number, app.phone
            approve = self._words.approve(host.locale)
            reject = self._words.reject(host.locale)
            pid = person.id

            def text(_: Translate) -> str:
                return (
                    _(
                        "Registration waiting for you: {name}, ID {id_number}, phone {phone}, "
                        "{category}, {days} days.",
                        name=mask_name(app.name),
                        id_number=mask_id_number(id_number),
                        phone=mask_phone(phone),
                        category=_(self._words.categories.get(app.category, app.category)),
                        days=app.days,
                    )
                    + "\n"
                    + options(
                        [
                            (_("Approve"), f"{approve} {pid}"),
                            (_("Reject"), f"{reject} {pid}"),
                        ]
                    )
                )

            await self._notifications.enqueue(
                session,
                person_id=host.id,
                kind="registration_request",
                text=text,
                key=f"registration:{pid}:request",
                now=now,
                locale=host.locale,
            )
            audit.record(session, f"person:{host.id}", "notify", pid, "registration request")
        return Outcome.REGISTERED, pid

    async def _may_decide(self, session: AsyncSession, decider_no: str, person: Person) -> bool:
        if person.responsible_id is not None:
            host_no = await session.scalar(
                select(Person.person_no).where(Person.id == person.responsible_id)
            )
            if host_no == decider_no:
                return True
        unit_id: int | None = person.unit_id
        seen: set[int] = set()
        while unit_id is not None and unit_id not in seen:
            seen.add(unit_id)
            found = await session.scalar(
                select(UnitResponsible.unit_id).where(
                    UnitResponsible.unit_id == unit_id, UnitResponsible.person_no == decider_no
                )
            )
            if found is not None:
                return True
            unit_id = await session.scalar(select(Unit.parent_id).where(Unit.id == unit_id))
        return False

    async def decide(
        self,
        decider_id: int,
        decider_no: str,
        decider_roles: frozenset[str],
        person_id: int,
        approve: bool,
    ) -> tuple[Decision, str | None]:
        """The decision, and the applicant's openid (whose cached principal is now stale)."""
        now = utcnow(self._clock)
        async with self._sessions.begin() as session:
            person = await session.get(Person, person_id, with_for_update=True)
            if person is None:
                return Decision.NOT_PENDING, None
            allowed = person.responsible_id == decider_id or (
                "responsible" in decider_roles
                and await self._may_decide(session, decider_no, person)
            )
            if not allowed:
                return Decision.NOT_ALLOWED, None
            if person.state != "pending":
                return Decision.NOT_PENDING, None
            person.state = "active" if approve else "left"
            audit.record(
                session,
                f"person:{decider_id}",
                "approve" if approve else "reject",
                person.id,
                "registration decision",
            )

            def text(_: Translate) -> str:
                if approve:
                    return _(
                        "Your registration was approved. It is valid until {date}.",
                        date=str(person.valid_until),
                    )
                return _("Your registration was not approved. Please contact your host.")

            await self._notifications.enqueue(
                session,
                person_id=person.id,
                kind="registration_decided",
                text=text,
                key=f"registration:{person.id}:decided",
                now=now,
                locale=person.locale,
            )
            openid = await session.scalar(
                select(WeChatAccount.openid).where(WeChatAccount.person_id == person.id)
            )
        return (Decision.APPROVED if approve else Decision.REJECTED), openid

    async def overview(self, person_no: str) -> Overview | None:
        """The units a person is responsible for (with sub-units): None when there are none."""
        async with self._sessions() as session:
            direct = set(
                (
                    await session.execute(
                        select(UnitResponsible.unit_id).where(
                            UnitResponsible.person_no == person_no
                        )
                    )
                ).scalars()
            )
            if not direct:
                return None
            children: dict[int, list[int]] = {}
            names: dict[int, str] = {}
            for uid, parent, code in await session.execute(
                select(Unit.id, Unit.parent_id, Unit.code)
            ):
                names[uid] = code
                if parent is not None:
                    children.setdefault(parent, []).append(uid)
            units: set[int] = set()
            todo = list(direct)
            while todo:
                uid = todo.pop()
                if uid not in units:
                    units.add(uid)
                    todo.extend(children.get(uid, []))
            by_category: dict[str, int] = {}
            for category, n in await session.execute(
                select(Person.category, func.count())
                .where(Person.unit_id.in_(units), Person.state == "active")
                .group_by(Person.category)
            ):
                by_category[category] = int(n)
            bound = await session.scalar(
                select(func.count())
                .select_from(Person)
                .join(WeChatAccount, WeChatAccount.person_id == Person.id)
                .where(Person.unit_id.in_(units), Person.state == "active")
            )
            pending = [
                Pending(pid, mask_name(name), category, until)
                for pid, name, category, until in await session.execute(
                    select(Person.id, Person.name, Person.category, Person.valid_until)
                    .where(Person.unit_id.in_(units), Person.state == "pending")
                    .order_by(Person.id)
                    .limit(MAX_PENDING_SHOWN)
                )
            ]
        return Overview(
            units=tuple(sorted(names[u] for u in direct)),
            by_category=by_category,
            bound=int(bound or 0),
            pending=tuple(pending),
        )


async def expire_and_remind(
    sessions: async_sessionmaker[AsyncSession],
    notifications: Notifications,
    today: date,
    now: datetime,
    on_expired: Callable[[list[int]], Awaitable[object]] | None = None,
) -> tuple[int, int]:
    """Remind applicant and host 3 days ahead; expire records past valid_until.

    Returns (reminders queued, records expired). Idempotent: a reminder's key names the person
    and the date, and an expired record is not expired again. `on_expired` gets the expired
    persons' ids once that is committed (the job drops their cached principals).
    """
    remind_on = today + timedelta(days=REMIND_DAYS_BEFORE)
    reminded = 0
    async with sessions.begin() as session:
        due = list(
            (
                await session.execute(
                    select(Person).where(
                        Person.state == "active",
                        Person.valid_until.is_not(None),
                        Person.valid_until > today,
                        Person.valid_until <= remind_on,
                    )
                )
            ).scalars()
        )
        for person in due:
            until = str(person.valid_until)

            def own(_: Translate, until: str = until) -> str:
                return _(
                    "Your campus registration ends on {date}. If you need longer, please "
                    "contact your host.",
                    date=until,
                )

            if await notifications.enqueue(
                session,
                person_id=person.id,
                kind="registration_expiring",
                text=own,
                key=f"registration:{person.id}:expiring:{until}",
                now=now,
                locale=person.locale,
            ):
                reminded += 1
            if person.responsible_id is not None:
                name = mask_name(person.name)

                def host(_: Translate, until: str = until, name: str = name) -> str:
                    return _(
                        "The registration of {name}, whom you host, ends on {date}.",
                        name=name,
                        date=until,
                    )

                if await notifications.enqueue(
                    session,
                    person_id=person.responsible_id,
                    kind="registration_expiring",
                    text=host,
                    key=f"registration:{person.id}:expiring:{until}:host",
                    now=now,
                ):
                    reminded += 1
        expired_ids = list(
            (
                await session.execute(
                    select(Person.id).where(
                        Person.state.in_(("active", "pending")),
                        Person.valid_until.is_not(None),
                        Person.valid_until < today,
                    )
                )
            ).scalars()
        )
        if expired_ids:
            await session.execute(
                update(Person).where(Person.id.in_(expired_ids)).values(state="expired")
            )
            for pid in expired_ids:
                audit.record(session, "scheduler", "expire", pid, "valid_until passed")
    if expired_ids and on_expired is not None:
        await on_expired(expired_ids)
    return reminded, len(expired_ids)
