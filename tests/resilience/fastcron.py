"""`healthbot` with every cron schedule replaced by "every HEALTHBOT_TEST_CRON_SECONDS".

The scheduler's cron has a one-minute grain; a failover test cannot wait minutes for a job to
fire. This runs the real `healthbot scheduler` (leader election, jobs, outbox dispatcher) with
only the trigger swapped: `python -m tests.resilience.fastcron scheduler`.
"""

from __future__ import annotations

import os
from datetime import tzinfo

from apscheduler.triggers.interval import IntervalTrigger

import scheduler.runner
from bot.cli import main


class _EverySeconds:
    @staticmethod
    def from_crontab(expr: str, timezone: tzinfo | None = None) -> IntervalTrigger:
        seconds = float(os.environ.get("HEALTHBOT_TEST_CRON_SECONDS", "1"))
        return IntervalTrigger(seconds=seconds, timezone=timezone)


scheduler.runner.CronTrigger = _EverySeconds

if __name__ == "__main__":
    main()
