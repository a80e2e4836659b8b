"""In-process tests of the server's parts.

A package, so their module names cannot clash with those in tests/.
"""
