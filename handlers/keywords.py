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
