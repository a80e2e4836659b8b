"""The server under test (target.py), what it can do (capabilities.py) and its profiles."""
