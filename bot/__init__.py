"""Healthy Campus Bot: the service shell (CLI, settings, app factory, WeChat protocol, dispatch)."""
