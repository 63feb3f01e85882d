"""Errors a user can act on.

Every problem caused by input (a file, a column, a value, a flag) is raised as a
:class:`TripletlitError` whose message is ONE line saying what is wrong and what to do.
The command line prints that line and exits with code 2, without a traceback.
"""


class TripletlitError(Exception):
    """A user-facing error: one line, exit code 2, no traceback."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class DataError(TripletlitError):
    """Bad or missing input data (files, columns, values)."""


class DownloadError(TripletlitError):
    """The data set could not be fetched or failed its integrity check."""
