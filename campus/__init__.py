"""The domain: registry, binding, health rules, pass codes, access, returns, meals, tracing."""
