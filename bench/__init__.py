"""Rigger's benchmarks: micro-benchmarks, a locust load, and the fanout harness (`python -m bench`).

Nothing here is collected by the normal test run: pytest's testpaths is tests/.
"""
