"""Routing and conversation state: per-user lock, locale, state, rate limit, the router."""
