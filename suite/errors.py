"""The user-facing error type: the CLI prints its message as one line and exits with code 2."""


class UserError(Exception):
    """A problem the user can fix (bad argument, missing or corrupt file); the message says what."""
