"""One pass code's signature check, alone: the gate's verifier against libsodium and OpenSSL.

    taskset -c 0 .venv/bin/python bench/signature_bench.py [--rounds 7] [--number 20000]

Each library checks the same genuine code's signature over the same message
(campus/access/token.py's `signed_message`); the rounds alternate between them, so a drift in
the machine's speed falls on all three, and the table gives each one's fastest and median
round in µs a check. libsodium (PyNaCl) comes with the test extras.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign_open

from campus.access import token as tk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000, help="checks a round")
    args = parser.parse_args()

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    claims = tk.PassClaims(tk.key_id_for(key.public_key()), 7, "green", 1, 601)
    code = tk.parse(tk.sign(claims, key, "wxbench"))
    message = tk.signed_message("wxbench", code.payload)
    verifier = tk.Verifier(key.public_key())
    public = key.public_key()
    signed = code.signature + message

    def gate() -> None:
        if not verifier.verify(code.signature, message):
            raise AssertionError("the gate refused a genuine code")

    checks: dict[str, Callable[[], object]] = {
        "gate (ed25519-zebra + libsodium's byte checks)": gate,
        "libsodium (crypto_sign_open)": lambda: crypto_sign_open(signed, verifier.raw),
        "OpenSSL (cryptography)": lambda: public.verify(code.signature, message),
    }
    rounds: dict[str, list[float]] = {name: [] for name in checks}
    for _ in range(args.rounds):
        for name, check in checks.items():
            started = time.perf_counter()
            for _ in range(args.number):
                check()
            rounds[name].append((time.perf_counter() - started) / args.number * 1e6)
    print(f"{'check':48} {'fastest µs':>10} {'median µs':>10}")
    for name, times in rounds.items():
        print(f"{name:48} {min(times):10.1f} {statistics.median(times):10.1f}")


if __name__ == "__main__":
    main()
