"""`/trace?t=…`: a trace's full contact list, opened from a health officer's chat link.

The signed link (campus.links, kind `trace`, valid tracing.link_minutes) is the only
credential; the asking officer must still be an active health officer, and every opening is
audited. One self-contained page: no script, nothing fetched from elsewhere, not cached, not
sent on as a referrer. A bad link gets a short page in the reader's language with a 4xx.
"""

from __future__ import annotations

import logging
from html import escape

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot import appkeys as K
from bot.i18n import LOCALES, Translate, translator
from campus.identity import mask_name
from campus.links import BadLink
from campus.tracing.service import TraceRefused, TraceResult, TraceService

log = logging.getLogger(__name__)

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
CSS = (
    "body{margin:0;font:14px/1.45 -apple-system,'PingFang SC','Microsoft YaHei',sans-serif;"
    "color:#1f2933;background:#f3f5f7}header{background:#9b1c1c;color:#fff;padding:12px 16px}"
    "h1{margin:0;font-size:18px}.meta{font-size:12px;opacity:.85}main{padding:10px;"
    "overflow-x:auto}table{border-collapse:collapse;background:#fff;width:100%}"
    "th,td{padding:5px 6px;border-bottom:1px solid #e4e7eb;text-align:left;white-space:nowrap}"
    "th{font-size:12px;color:#52606d;font-weight:500}td.n{text-align:right}"
)


async def trace_page(request: web.Request) -> web.Response:
    query = request.rel_url.query
    locale = request.app[K.SETTINGS].default_locale
    tracing: TraceService = request.app[K.SERVICES]["tracing"]
    token = query.get("t", "")
    if not token:
        return _refusal(400, locale, "incomplete")
    try:
        outcome = await tracing.open_link(token)
    except SQLAlchemyError:
        log.exception("trace page: the database failed")
        return _refusal(503, locale, "unavailable")
    if isinstance(outcome, BadLink):
        status = 400 if outcome.reason == "malformed" else 403
        return _refusal(status, locale, outcome.reason)
    if outcome is TraceRefused.UNKNOWN_PERSON:
        return _refusal(404, locale, "gone")
    if isinstance(outcome, TraceRefused):
        return _refusal(403, locale, "not_allowed")
    result, claimed = outcome
    if claimed in LOCALES:
        locale = claimed
    html = render(result, tracing, locale)
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=HEADERS)


def _refusal(status: int, locale: str, why: str) -> web.Response:
    """A short page in both languages: a link that did not verify names no reader."""
    paragraphs = []
    for lang in [locale, *(x for x in LOCALES if x != locale)]:
        _ = translator(lang)
        messages = {
            "incomplete": _("This trace link is incomplete."),
            "expired": _(
                "This trace link has expired. Send the trace command again for a new one."
            ),
            "unavailable": _("The contact list is unavailable just now."),
            "gone": _("This person is no longer on record."),
            "not_allowed": _("Only health officers may open this list."),
        }
        paragraphs.append(f"<p>{escape(messages.get(why, _('This trace link is not valid.')))}</p>")
    return web.Response(
        status=status,
        text=_page(
            translator(locale)("Contact tracing"), "", f"<main>{''.join(paragraphs)}</main>", locale
        ),
        content_type="text/html",
        charset="utf-8",
        headers=HEADERS,
    )


def _page(title: str, header: str, body: str, locale: str) -> str:
    lang = "zh-CN" if locale == "zh_CN" else "en"
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"{header}{body}</body></html>"
    )


def render(result: TraceResult, tracing: TraceService, locale: str) -> str:
    _: Translate = translator(locale)
    tz = tracing.tz
    title = _("Contact tracing")
    case = result.case
    meta = _(
        "{name} ({person_no}) · {start} – {end} · margin {margin} min · {count} contact(s)",
        name=mask_name(case.name),
        person_no=case.person_no,
        start=f"{result.window.since.astimezone(tz):%Y-%m-%d %H:%M}",
        end=f"{result.window.until.astimezone(tz):%Y-%m-%d %H:%M}",
        margin=result.margin_minutes,
        count=len(result.contacts),
    )
    header = (
        f"<header><h1>{escape(title)}</h1><div class=meta>{escape(meta)}</div>"
        f"<div class=meta>{escape(_('Confidential: for the health office only.'))}</div></header>"
    )
    heads = [
        "#",
        _("Person no."),
        _("Name"),
        _("Unit"),
        _("Overlap (min)"),
        _("Place"),
        _("Visit"),
        _("Overlapping"),
    ]
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>"]
    for rank, contact in enumerate(result.contacts, 1):
        for i, e in enumerate(contact.encounters):
            first = i == 0
            cells = [
                (str(rank) if first else "", "n"),
                (contact.person_no if first else "", ""),
                (contact.name if first else "", ""),
                (result.units.get(contact.unit_id, "") if first else "", ""),
                (str(contact.overlap_minutes) if first else "", "n"),
                (f"{e.place_name} ({e.place_code})", ""),
                (f"{e.start.astimezone(tz):%m-%d %H:%M}–{e.end.astimezone(tz):%H:%M}", ""),
                (
                    f"{e.overlap_from.astimezone(tz):%m-%d %H:%M}–"
                    f"{e.overlap_to.astimezone(tz):%H:%M}",
                    "",
                ),
            ]
            rows.append(
                "<tr>"
                + "".join(
                    f"<td class={cls}>{escape(v)}</td>" if cls else f"<td>{escape(v)}</td>"
                    for v, cls in cells
                )
                + "</tr>"
            )
    if not result.contacts:
        body = f"<main><p>{escape(_('No contacts in this window.'))}</p></main>"
    else:
        body = f"<main><table>{''.join(rows)}</table></main>"
    return _page(title, header, body, locale)
