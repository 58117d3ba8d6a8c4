"""The chat keywords of DESIGN.md (either language, any case) and the custom-menu keys."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keyword:
    zh: str
    en: str

    @property
    def words(self) -> tuple[str, str]:
        return (self.zh, self.en)

    def text(self, locale: str) -> str:
        """The word a user of this locale would type (and an option sends)."""
        return self.zh if locale == "zh_CN" else self.en


CHECKIN = Keyword("打卡", "checkin")
CODE = Keyword("健康码", "code")
STATUS = Keyword("状态", "status")
RETURN = Keyword("返校", "return")
MEAL = Keyword("订餐", "meal")
BIND = Keyword("绑定", "bind")
UNBIND = Keyword("解绑", "unbind")
REGISTER = Keyword("登记", "register")
HELP = Keyword("帮助", "help")
CANCEL = Keyword("取消", "cancel")
NOTIFY = Keyword("通知", "notify")
ON_DUTY = Keyword("上岗", "onduty")  # guards: `上岗 <place code>`
OFF_DUTY = Keyword("下岗", "offduty")
EXIT = Keyword("出", "out")  # the next scan (guard's or self check-in) records an exit
ACK = Keyword("收到", "ack")  # responsible persons acknowledge a health warning
SET_STATUS = Keyword("设置状态", "setstatus")  # health officers: `设置状态 <no> <colour> <reason>`
APPROVE_REG = Keyword("同意登记", "approve")  # hosts: `同意登记 <registration id>`
REJECT_REG = Keyword("驳回登记", "reject")
MY_UNIT = Keyword(
    "我的单位", "myunit"
)  # "my unit" (two words) is routed too  # responsible persons: their units at a glance
DASHBOARD = Keyword("统计", "dashboard")  # a signed link to the dashboard (issue 11)
# Return to campus (issue 8): approvers send `同意 A12` / `驳回 A12 <reason>`; the English
# words are the registration's too, told apart by the application's `A` (handlers/returns.py).
APPROVE_RETURN = Keyword("同意", "approve")
REJECT_RETURN = Keyword("驳回", "reject")
PENDING = Keyword("待审批", "pending")
# Meals (issue 9): "my orders" (two words) is routed too; `取消订单 <no.>` cancels an order
# (one English word: `cancel` alone stops a conversation); canteen staff send `订单汇总`.
MY_ORDERS = Keyword("我的订单", "myorders")
CANCEL_ORDER = Keyword("取消订单", "cancelorder")
ORDERS = Keyword("订单汇总", "orders")
# Tracing (issue 10), health officers only: `追踪 <person_no> [days]`; `事件 <person_no> <note>`
# opens an incident, `事件 标记|查看|关闭 <no.> …` marks close contacts, shows, closes it.
TRACE = Keyword("追踪", "trace")
INCIDENT = Keyword("事件", "incident")
MARK_WORD = Keyword("标记", "mark")
SHOW_WORD = Keyword("查看", "show")
CLOSE_WORD = Keyword("关闭", "close")
ALL_WORD = Keyword("全部", "all")
ENGLISH = "english"
CHINESE = "中文"

# Custom-menu keys (CLICK) and the scanner button (scancode_waitmsg).
MENU_CHECKIN = "CHECKIN"
MENU_MY_CODE = "MY_CODE"
MENU_MY_STATUS = "MY_STATUS"
MENU_RETURN = "RETURN"
MENU_MEALS = "MEALS"
MENU_HELP = "HELP"
MENU_VERIFY = "VERIFY"
