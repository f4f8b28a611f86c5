"""Executor adapters: how a cli step actually runs (local process now, pods later)."""
