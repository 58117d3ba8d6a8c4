"""The event loop of the long-running commands (`serve`, `scheduler`, `demo`).

uvloop (libuv underneath) does the loop's own work in C: reading sockets, scheduling
callbacks, timers. A message makes several turns of the loop (the request, two Redis round
trips, a database batch), so that work is a fair share of its cost: on one core a guard's
scan took 435 µs of CPU on asyncio's loop and 382 µs on uvloop, while the echo reference
stayed at 166 µs on either (bench/README.md, issue 7).

`HEALTHBOT_EVENT_LOOP`: `auto` (uvloop when installed, else asyncio's), `uvloop` (required)
or `asyncio` (to rule the loop out when chasing a problem).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

CHOICES = ("auto", "uvloop", "asyncio")

# The shortest wait worth asking for. uvloop's clock counts whole milliseconds and runs a
# shorter timer at once, so a loop that waits "what is left until the deadline" would spin
# through the last fraction of a millisecond until the clock ticked.
TICK = 0.001


def new_loop(choice: str = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop of the kind `choice` names (one of CHOICES)."""
    if choice not in CHOICES:
        raise ValueError(f"unknown event loop {choice!r}; use one of {', '.join(CHOICES)}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise RuntimeError(
                    "HEALTHBOT_EVENT_LOOP=uvloop, but uvloop is not installed"
                ) from None
        else:
            log.info("event loop: uvloop %s", uvloop.__version__)
            return uvloop.new_event_loop()
    log.info("event loop: asyncio")
    # The platform's own loop, whatever event-loop policy has been set in this process.
    return asyncio.DefaultEventLoopPolicy().new_event_loop()
