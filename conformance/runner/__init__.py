"""The runner, the only judge: one case run (case_run.py) and the parts it drives.

Its stage (stage.py), its streams (streams.py), unary calls (unary.py), its
transcript (transcript.py), and the judgement of what the clients saw
(judge.py).
"""
