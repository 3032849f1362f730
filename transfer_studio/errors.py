"""Errors that carry a message meant for the user (shown as one line, CLI exit code 2)."""


class UserError(Exception):
    """Bad input from the user: a wrong path, an unknown model, a corrupt file.

    The message is complete and actionable; the CLI prints it on one line and exits with code 2,
    the GUI shows it in the page. Never show a traceback for one of these.
    """


class Cancelled(Exception):
    """A long task stopped because the user asked it to."""


class ExitQuietly(Exception):
    """End the CLI with this exit code and print nothing more: the message was already shown (by
    another process of a distributed run)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code
