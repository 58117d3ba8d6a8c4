"""What the outbox benchmark's processes share: the emulated account and the openids."""

from __future__ import annotations

TOKEN = "outbox-bench"
APPID = "wxoutboxbench0001"
SECRET = "outbox-bench-secret"
TEMPLATE_ID = "TPL_bench_broadcast"
UNIT_CODE = "OBROOT"


def openid(user: int) -> str:
    return f"ob{user:06d}"
