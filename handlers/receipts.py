"""WeChat's own reports about pushes (TEMPLATESENDJOBFINISH): recorded on the outbox row.

These arrive as events from the recipient's openid but are not the user's doing: the dispatcher
routes them without touching the user's state, lock or 48-hour window.
"""

from __future__ import annotations

from bot.replies import Message, Silence
from bot.wechat.messages import Incoming
from campus.notifications import Notifications


async def template_finished(msg: Incoming, notifications: Notifications) -> Message:
    await notifications.template_finished(msg.msg_id, msg.status)
    return Silence()
