"""The errors a user can cause, as opposed to bugs.

Every error that bad input can raise (a config, a model sheet, a trace, a timeline, a
command-line value) derives from ``UserError``. The CLI turns a ``UserError`` into one short
message and exit code 2; anything else is a bug and keeps its traceback. docs/troubleshooting.md
lists the messages and what each means.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user can fix; the message says where (file, line, field), the bad value and
    what is allowed."""


EXIT_USER_ERROR = 2
