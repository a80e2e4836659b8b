"""The conformance suite's parts in process: cases, plans, judging, verdicts, framing."""
