"""Rigger's cross-language conformance suite.

Cases are YAML data (conformance/cases/); each language's executor carries
out instructions and reports raw observations; the Python runner judges them
all by one standard. `python -m conformance` runs it; conformance/README.md
explains how to write a case and how to add a language.
"""
