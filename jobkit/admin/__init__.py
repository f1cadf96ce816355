"""The admin command, ``python -m jobkit SUBCOMMAND TARGET ...``: see :mod:`jobkit.admin.cli`.

:mod:`~jobkit.admin.cli` reads the arguments and turns errors into exit codes,
:mod:`~jobkit.admin.commands` holds one ``cmd_*`` per subcommand, and
:mod:`~jobkit.admin.views` draws for people; the JSON and the text of times are
:mod:`jobkit.present`'s, shared with the dashboard.
"""

from jobkit.admin.cli import main

__all__ = ["main"]
