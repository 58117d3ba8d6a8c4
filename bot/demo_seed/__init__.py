"""The demo campus (CSV in the formats of DESIGN.md), seeded by `healthbot demo`."""
