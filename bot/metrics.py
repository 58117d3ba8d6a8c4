"""Prometheus metrics of the bot, in the default registry, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter

WECHAT_API_ERRORS = Counter(
    "healthbot_wechat_api_errors",
    "Failed WeChat API calls by errcode, or network, http_<status>, invalid_response, token_wait.",
    ["code"],
)

# Callback and dispatch metrics.
from prometheus_client import Histogram  # noqa: E402

CALLBACK_REQUESTS = Counter(
    "healthbot_callback_requests",
    "Callback requests by outcome: reply, empty, late, duplicate, rejected_<status>, error.",
    ["outcome"],
)
HANDLER_LATENCY = Histogram(
    "healthbot_handler_seconds",
    "Time from a message's arrival to its reply, by handler.",
    ["handler"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 4.5, 10),
)
DEDUP_HITS = Counter("healthbot_dedup_hits", "Retried deliveries answered from the first one.")
RATE_LIMITED = Counter("healthbot_rate_limited", "Messages over the per-user rate limit.")

# Outbox and dispatcher (scheduler/dispatcher.py).
from prometheus_client import Gauge  # noqa: E402

OUTBOX_DEPTH = Gauge(
    "healthbot_outbox_depth",
    "Outbox rows by state (pending, sending, sent, failed, cancelled), as last counted.",
    ["state"],
    multiprocess_mode="max",
)
OUTBOX_SENT = Counter(
    "healthbot_outbox_sent", "Pushes WeChat accepted, by kind and channel.", ["kind", "channel"]
)
OUTBOX_FAILED = Counter(
    "healthbot_outbox_failed",
    "Pushes given up, by kind and error code (errcode, unbound, no_template, user_block, …).",
    ["kind", "code"],
)
OUTBOX_RETRIED = Counter(
    "healthbot_outbox_retried", "Sends that will be tried again, by error code.", ["code"]
)
OUTBOX_LATENCY = Histogram(
    "healthbot_outbox_dispatch_seconds",
    "From a push falling due (not_before) to WeChat accepting it, by channel.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600, 1800, 3600),
)
ACCESS_DECISIONS = Counter(
    "healthbot_access_decisions",
    "Guard scans and self check-ins, by method (guard|self), direction and reason ('' = pass).",
    ["method", "direction", "reason"],
)

# Batched database work (storage/batching.py).
BATCH_SIZE = Histogram(
    "healthbot_batch_size",
    "Calls served by one batched round trip to the database, by batcher.",
    ["batcher"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

# Rows written behind (storage/behind.py).
ROWS_BEHIND = Gauge(
    "healthbot_rows_behind",
    "Rows queued to be written behind and not committed yet, by queue.",
    ["queue"],
    multiprocess_mode="livesum",
)
ROWS_BEHIND_DROPPED = Counter(
    "healthbot_rows_behind_dropped",
    "Rows written behind that the database refused (an integrity error) and were dropped.",
    ["queue"],
)
