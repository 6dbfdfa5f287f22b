"""What every command of the CLI (huskyai.cli) shares: its parser, the model options, and where messages go."""

from __future__ import annotations

import argparse
import sys


def user_error(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def stderr(msg: str) -> None:
    """Progress goes to stderr, so that stdout holds only the result (a table, or JSON)."""
    print(msg, file=sys.stderr)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="export folder, or a shipped model's name (default: the shipped model)")
    p.add_argument("--sha256", help="trust the export whose model.json has this sha256 (or $HUSKYAI_MODEL_SHA256)")
    p.add_argument("--trust-unsigned", action="store_true",
                   help="load an unsigned, unpinned export anyway (shown in the audit log and the app)")


def command(sub, name: str, text: str, run) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, description=text)
    p.set_defaults(run=run)
    return p
