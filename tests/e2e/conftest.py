"""End-to-end tests: real outside programs (here, pytest running a sample project).

``sample/`` is a project of its own, run by the tests in a copy: no other run of pytest
may collect it (its test files are named ``check_*.py`` too).
"""

collect_ignore = ["sample"]
