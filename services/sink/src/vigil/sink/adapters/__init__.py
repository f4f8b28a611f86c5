"""Sink adapters: one per destination type (HTTP webhook now; Slack, Teams … later)."""
