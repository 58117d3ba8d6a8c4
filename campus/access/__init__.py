"""Access control: signed pass codes, gate and place policies, guards on duty, access records.

- `token`: the pass-code format of docs/passcode.md (pure functions, no I/O).
- `keys`: the Ed25519 key ring (stored encrypted, cached in memory, rotated with overlap).
- `passes`: issuing and verifying person codes.
- `policies`: the `policies:` section of the rules file and the decision it makes.
- `places`: an in-memory view of the place tree for decisions on the hot path.
- `duty`: which gate a guard is on duty at, and a pending exit.
- `gate`: guard scans and self check-ins, decided and written as access records.
- `artwork`: the pass-code card and the place poster as PNG images.
"""
