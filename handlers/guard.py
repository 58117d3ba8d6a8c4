"""Guards: `上岗 <place>` / `下岗`, `出` before a scan, and the VERIFY scanner's pass-code checks.

A scan by anyone who is not a guard on duty is answered without looking at the code, so it
reveals nothing about it or its holder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bot.guardtags import GuardTagger
from bot.i18n import Translate
from bot.replies import Message, Text
from bot.settings import Settings
from bot.wechat.messages import Incoming
from campus.access.duty import GuardDuty
from campus.access.gate import AccessService, GateNote
from campus.access.passes import PassService
from campus.access.places import PlaceInfo
from campus.access.posters import PosterBook
from campus.access.token import PREFIX
from campus.accounts import Principal
from handlers import keywords as kw
from handlers.decisions import for_guard

GUARD = "guard"


def is_guard(user: Principal) -> bool:
    return user.bound and user.has_role(GUARD) and user.state == "active"


async def start_duty(
    user: Principal, place: PlaceInfo, duty: GuardDuty, guard_tags: GuardTagger, _: Translate
) -> Message:
    await duty.start(user.openid, place.id)
    await guard_tags.tag(user.openid)
    return Text(
        _(
            "On duty at {place} for {hours} hours. Scan pass codes with the 扫码核验 button. "
            "Before scanning someone who is leaving, send {out}; send {off} when you finish.",
            place=place.name,
            hours=round(duty.shift / 3600),
            out=kw.EXIT.text(user.locale),
            off=kw.OFF_DUTY.text(user.locale),
        )
    )


async def on_duty(
    args: str,
    user: Principal,
    duty: GuardDuty,
    access: AccessService,
    guard_tags: GuardTagger,
    _: Translate,
) -> Message:
    if not is_guard(user):
        return Text(_("Only guards can go on duty."))
    code = args.strip()
    if not code:
        return Text(
            _(
                "Send {word} <place code>, or scan the poster at your post.",
                word=kw.ON_DUTY.text(user.locale),
            )
        )
    place = await access.places.by_code(code)
    if place is None:
        return Text(_("No place has the code {code}.", code=code[:64]))
    return await start_duty(user, place, duty, guard_tags, _)


async def off_duty(
    user: Principal, duty: GuardDuty, access: AccessService, _: Translate
) -> Message:
    if not is_guard(user):
        return Text(_("Only guards can go on duty."))
    place_id = await duty.end(user.openid)
    place = await access.places.by_id(place_id) if place_id is not None else None
    if place is None:
        return Text(_("You are not on duty."))
    return Text(_("Off duty at {place}. Thank you!", place=place.name))


async def mark_exit(user: Principal, duty: GuardDuty, _: Translate) -> Message:
    if not user.bound:
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    await duty.mark_exit(user.openid)
    if is_guard(user) and await duty.place(user.openid) is not None:
        return Text(_("The next scan records an exit."))
    return Text(_("Now scan the place's code to check out."))


def scan_prefetch(duty: GuardDuty, passes: PassService) -> Callable[[Incoming], list[str]]:
    """For the dispatcher: a VERIFY scan reads the guard's post, and the scanned code's issue
    record (campus/access/issued.py), with the conversation, so the scan's hot path makes no
    KV read of its own (see `verify`)."""

    def keys(msg: Incoming) -> list[str]:
        if (
            msg.kind == "event"
            and msg.event in ("scancode_waitmsg", "scancode_push")
            and msg.event_key == kw.MENU_VERIFY
        ):
            record = passes.record_key(msg.scan_result)
            post = duty.post_keys(msg.openid)
            return post if record is None else [*post, record]
        return []

    return keys


async def verify(
    msg: Incoming,
    user: Principal,
    settings: Settings,
    duty: GuardDuty,
    access: AccessService,
    posters: PosterBook,
    guard_tags: GuardTagger,
    _: Translate,
    prefetched: Mapping[str, bytes | None],
) -> Message:
    if not is_guard(user):
        return Text(_("Only guards on duty can check pass codes."))
    scanned = msg.scan_result.strip()
    if not scanned.startswith(PREFIX):
        # A guard may go on duty by scanning the post's poster with this very button.
        place_id = await posters.place_for_url(scanned)
        poster_place = await access.places.by_id(place_id) if place_id is not None else None
        if poster_place is not None:
            return await start_duty(user, poster_place, duty, guard_tags, _)
    post = await duty.take_post(user.openid, prefetched)
    if post.place_id is None:
        return Text(
            _(
                "You are not on duty. Send {word} <place code>, or scan the poster at your "
                "post, then scan again.",
                word=kw.ON_DUTY.text(user.locale),
            )
        )
    place = await access.places.by_id(post.place_id)
    if place is None:
        await duty.end(user.openid)
        return Text(_("Your post is no longer on record. Please go on duty again."))
    assert user.person_id is not None  # is_guard: bound
    decision = await access.scan(scanned, place, user.person_id, post.direction, prefetched)
    text = for_guard(decision, settings.tz, _)
    if decision.note is not None:
        text += "\n" + arrival_line(decision.note, _)
    return Text(text)


def arrival_line(note: GateNote, _: Translate) -> str:
    """The return feature's word on a gate entry (issue 8)."""
    day = str(note.day) if note.day else ""
    if note.arrived:
        return _("Return to campus: arrival recorded.")
    if note.problem == "pending":
        return _("Return to campus: their application is not approved yet.")
    if note.problem == "too_early":
        return _("Return to campus: approved for {date}, too early to arrive.", date=day)
    return _("Return to campus: approved for {date}, which has passed.", date=day)
