"""What the benchmark tools share: openids, the seeded persons, signing and message bodies.

Keep in step with wrk/common.lua (openid = prefix + %06d; MsgIds unique per run).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

HELP_PREFIX = "ohelp"  # scenario (a): any followers, bound or not
BOUND_PREFIX = "obench"  # scenario (b): followers bound to the seeded persons
UNIT_CODE = "BENCH"
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"


def openid(prefix: str, user: int) -> str:
    return f"{prefix}{user:06d}"


def person_no(user: int) -> str:
    # Upper case: binding upper-cases what the user types before looking the number up.
    return f"B{user:07d}"


def resident_id(user: int) -> str:
    """A valid 18-digit mainland resident ID, distinct for every user < 366,000."""
    born = date(2000, 1, 1) + timedelta(days=user // 1000)
    first17 = f"110101{born:%Y%m%d}{user % 1000:03d}"
    return first17 + CHECK[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def signed_query(token: str, timestamp: int, nonce: str = "424242") -> dict[str, str]:
    ts = str(timestamp)
    return {"signature": signature(token, ts, nonce), "timestamp": ts, "nonce": nonce}


def text_body(openid: str, content: str, msgid: int, create_time: int) -> bytes:
    return (
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content>"
        f"<MsgId>{msgid}</MsgId></xml>"
    ).encode()


# wechatpy's spec sample, the same self-test as wrk/common.lua.
assert signature("spamtest", "1409735669", "1320562132") == (
    "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
)


def py_spy(pid: int, output: str | Path, seconds: int) -> subprocess.Popen[bytes]:
    """Sample `pid` with py-spy for `seconds`: collapsed stacks (raw) to `output`."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "500",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(output),
            "--duration",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
