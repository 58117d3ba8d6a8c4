"""WeChat's API error codes, and the exception the emulated endpoints raise to answer with one."""

from __future__ import annotations

import secrets

ERRMSG: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40005: "invalid file type",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40013: "invalid appid",
    40014: "invalid access_token",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40032: "invalid openid list size",
    40037: "invalid template_id",
    40053: "invalid action info",
    40054: "invalid sub button url domain",
    40055: "invalid button url domain",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    41006: "media_id missing",
    42001: "access_token expired",
    43004: "require subscribe",
    44002: "empty post data",
    44003: "empty news data",
    44004: "empty content",
    45002: "content size out of limit",
    45008: "article size out of limit",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit mustslower retry next minute",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45056: "too many tags",
    45059: "the user has too many tags",
    45157: "invalid tag name",
    45158: "tag name too long",
    45159: "invalid tag id",
    46003: "menu no exist",
    47001: "data format error",
    65301: "no such conditional menu",
    65303: "there is no default menu, create it first",
    65304: "match rule empty",
}


class ApiError(Exception):
    """A WeChat API failure; the API middleware turns it into `{"errcode", "errmsg"}`."""

    def __init__(self, errcode: int, hint: str = "") -> None:
        super().__init__(f"{errcode} {ERRMSG.get(errcode, 'error')} {hint}".strip())
        self.errcode = errcode
        self.hint = hint

    def body(self) -> dict[str, object]:
        message = ERRMSG.get(self.errcode, "error")
        if self.hint:
            message += f" hint: [{self.hint}]"
        # Real answers end with a request id; clients that log errmsg should cope with it.
        return {"errcode": self.errcode, "errmsg": f"{message} rid: {secrets.token_hex(8)}"}
