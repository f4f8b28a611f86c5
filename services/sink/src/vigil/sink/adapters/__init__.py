"""Sink adapters: one per destination type (log, webhook, PagerDuty, SMTP email; Slack,
Teams … to come)."""
