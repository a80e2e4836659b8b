"""Many case runs: planning them (plan.py), running them over a few workers
(execute.py), their verdicts and known failures, and the report.
"""
