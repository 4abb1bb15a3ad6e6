"""The one error type of the command line, shared by every ``cli.py`` without importing :mod:`seg2sat.cli`."""


class CommandError(Exception):
    """An expected failure: printed as ``error: <message>``, exit code 2."""
