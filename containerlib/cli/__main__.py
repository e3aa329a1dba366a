"""``python -m containerlib.cli``: the same as the ``containerlib`` command."""

from containerlib.cli.main import main

main()
