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
