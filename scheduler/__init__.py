"""Scheduled jobs (reminders, summaries, escalations, roll-over) and the outbox dispatcher."""
