"""The suite's self-test: it must fail against every deliberately broken server.

`search.py` runs the suite against each mutant until some run catches it;
`mutants.py` is the mutants themselves, the only module of the suite that
imports the server (rigger_server), and only through its test seams.
"""
