"""Typed failures of the WeChat API, one class per thing a caller does about them."""

from __future__ import annotations

from typing import ClassVar


class WeChatError(Exception):
    """Any failure talking to the WeChat API.

    `retryable` tells the outbox dispatcher whether sending the same request later can work.
    """

    retryable: ClassVar[bool] = False

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class WeChatAPIError(WeChatError):
    """WeChat answered, with a non-zero `errcode`."""

    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(path, f"WeChat API {path} failed: {errcode} {errmsg}".rstrip())
        self.errcode = errcode
        self.errmsg = errmsg


class TokenError(WeChatAPIError):
    """The access token is invalid or expired (40001, 40014, 42001): refresh once, retry."""

    retryable = True


class PermanentError(WeChatAPIError):
    """The request itself is wrong (bad openid, template, data; user not following)."""


class QuotaExceeded(WeChatAPIError):
    """The account's daily call quota is used up (45009): try again after the reset."""

    retryable = True


class RateLimited(WeChatAPIError):
    """The per-minute call limit is hit (45011): back off."""

    retryable = True


class OutsideWindow(WeChatAPIError):
    """A customer-service message more than 48 h after the user's last interaction (45015)."""


class CustomQuotaExceeded(WeChatAPIError):
    """The per-interaction quota of customer-service messages is used up (45047).

    Not retryable: only a new message from the user opens a new quota.
    """


class SystemBusy(WeChatAPIError):
    """WeChat is busy (-1): retry."""

    retryable = True


class NetworkError(WeChatError):
    """No usable answer: connection failure, timeout, HTTP error status or a malformed body."""

    retryable = True

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, f"WeChat API {path} unreachable: {reason}")
        self.reason = reason


TOKEN_ERRCODES = frozenset({40001, 40014, 42001})

_CLASSES: dict[int, type[WeChatAPIError]] = {
    **dict.fromkeys(TOKEN_ERRCODES, TokenError),
    45009: QuotaExceeded,
    45011: RateLimited,
    45015: OutsideWindow,
    45047: CustomQuotaExceeded,
    -1: SystemBusy,
}


def error_for(errcode: int, errmsg: str, path: str) -> WeChatAPIError:
    """The error for a WeChat errcode; codes we don't know are permanent.

    Unknown codes default to permanent so an unexpected answer can't make the outbox retry
    the same request forever (40003, 40037, 43004, 47001, 47003 land here too).
    """
    return _CLASSES.get(errcode, PermanentError)(errcode, errmsg, path)
