"""Rigger's gRPC server: tasks in SQLite, every change broadcast to sidecars."""

__version__ = "0.1.0"
