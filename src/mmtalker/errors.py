"""The one error type that reaches users.

Every problem with something the user handed us (a file, a folder, a config value) is raised as
:class:`MMTalkerError` naming *what* (usually a path), *the problem*, and *what to do*. The command
line prints it as one line and exits non-zero; the traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import os


class MMTalkerError(Exception):
    """A user-facing error: ``what: problem (hint)``.

    Args:
        what: the file, folder or setting at fault (a path is shown as given).
        problem: what is wrong with it, in plain words.
        hint: what the user can do about it (optional).
    """

    def __init__(self, what: str | os.PathLike | None, problem: str, hint: str | None = None):
        self.what = None if what is None else str(what)
        self.problem = problem
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.problem if self.what is None else f"{self.what}: {self.problem}"
        if self.hint:
            text += f" ({self.hint})"
        return text
