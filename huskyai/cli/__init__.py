"""The command line, ``huskyai COMMAND`` or ``python -m huskyai COMMAND``: each command parses its arguments,
calls the Python API (huskyai.api) and prints what it returns."""

from huskyai.cli.main import main

__all__ = ["main"]
