"""What every command of the CLI (huskyai.cli.main) shares: its parser, the model options, and where messages go."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def user_error(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def stderr(msg: str) -> None:
    """Progress goes to stderr, so that stdout holds only the result (a table, or JSON)."""
    print(msg, file=sys.stderr)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="export folder, a shipped model's name, or a Hugging Face Hub model "
                                   "hf://OWNER/NAME@REVISION (default: the shipped model)")
    p.add_argument("--sha256", help="trust the export whose model.json has this sha256 (or $HUSKYAI_MODEL_SHA256)")
    add_public_key_argument(p)
    p.add_argument("--trust-unsigned", action="store_true",
                   help="load an unsigned, unpinned export anyway (shown in the audit log and the app)")


def add_public_key_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--public-key", metavar="PUBLIC.pem",
                   help="trust the export signed (model.sig, OMS) by this public key's holder, and only if that "
                        "signature holds (or $HUSKYAI_MODEL_PUBLIC_KEY)")


def model_options(args: argparse.Namespace) -> dict:
    """The trust options of the model arguments, as huskyai.load takes them."""
    options = {"sha256": args.sha256, "trust_unsigned": args.trust_unsigned}
    return options | ({"public_key": args.public_key} if getattr(args, "public_key", None) else {})


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def picture_path_problem(path: str | Path) -> str | None:
    """Why a picture cannot be written to ``path`` (checked before the work, not after), else None."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder: name a picture file in it, e.g. {path / 'out.png'}"
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        return f"{path}: write the picture as {', '.join(PICTURE_SUFFIXES)}"
    if not path.parent.is_dir():
        return f"{path}: the folder {path.parent} does not exist"
    return None


def command(sub, name: str, text: str, run) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, description=text)
    p.set_defaults(run=run)
    return p
