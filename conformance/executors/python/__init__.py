"""The Python executor: drives the rigger_client package (clients/python) for the runner."""
