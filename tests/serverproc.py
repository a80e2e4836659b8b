"""The server-process helper, importable by its short name in tests."""

from rigger_server.process import ServerProcess

__all__ = ["ServerProcess"]
