"""Adapters: the only modules of vigil.common that import I/O clients (nats, aiosqlite)."""
