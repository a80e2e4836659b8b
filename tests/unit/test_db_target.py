"""What --db names, and how a URL is shown."""

from __future__ import annotations

from rigger_server.db_target import redact


def test_redact_hides_passwords_in_the_netloc_and_the_query():
    assert redact("postgresql://u:pw@h:5/db?sslmode=require&password=pw") == (
        "postgresql://u:***@h:5/db?sslmode=require&password=***"
    )
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
