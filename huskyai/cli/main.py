"""Command line: ``huskyai COMMAND`` or ``python -m huskyai COMMAND``, a thin skin over the Python API.

Each command parses its arguments, calls one function of the API (huskyai.api) and prints what it
returns; defaults come from the API (huskyai.training.config), never from here. To add a command, write
``add_NAME(sub)`` (its parser, with ``run=run_NAME``) and ``run_NAME(args) -> exit code``, and list
``add_NAME`` in COMMANDS. Errors meant for the user print as one ``error: ...`` line, exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path

from huskyai.cli.common import add_model_arguments, add_public_key_argument, model_options
from huskyai.cli.common import command as _command
from huskyai.cli.common import stderr as _stderr
from huskyai.cli.common import user_error as _err
from huskyai.cli.predict import add_evaluate, add_explain, add_predict
from huskyai.cli.score import add_score
from huskyai.errors import HuskyAIError
from huskyai.training.config import DoctorConfig, TrainConfig, add_options, options_from


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """train's arguments (also train.py's)."""
    from huskyai.api import DEFAULT_OUT

    p.add_argument("--data", required=True, nargs="+",
                   help="folder(s) with one sub-folder per label (husky/, not_husky/); several are combined")
    p.add_argument("--out", help=f"export folder to write (default: a new "
                                 f"{DEFAULT_OUT.format(kind='husky', time='<date>-<time>')}; never the shipped "
                                 f"model's folder unless --replace-shipped)")
    p.add_argument("--replace-shipped", action="store_true",
                   help="allow --out to be the shipped model's folder (export/), to rebuild the model the package "
                        "ships; huskyai.load() refuses it until the package's pin is updated")
    add_options(p, TrainConfig)


def add_train(sub) -> None:
    add_train_arguments(_command(sub, "train", "train on a photo folder and export a model", run_train))


def run_train(args: argparse.Namespace) -> int:
    from huskyai.api import train

    done = train(args.data, args.out, replace_shipped=args.replace_shipped, **options_from(args, TrainConfig))
    print(using(done.folder))
    return 0


def using(folder: Path) -> str:
    """How to use a freshly trained export: the lines ``train`` prints at its end."""
    from huskyai.trust import exports

    shown = folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder
    out = shlex.quote(str(shown))
    card_sha256 = exports.sha256((folder / exports.CARD_NAME).read_bytes())
    return (f"use it:\n  huskyai predict photo.jpg --model {out}\n"
            f"  HUSKYAI_MODEL={out} python app.py   (or: huskyai serve --model {out})\n"
            f"  huskyai.load({str(shown)!r})   (Python)\n"
            f"it is signed with this machine's key; elsewhere, pin its card: --sha256 {card_sha256} "
            f"(or {exports.MODEL_SHA256_ENV})")


def add_doctor(sub) -> None:
    from huskyai.training.doctor import SHEET_LIMIT

    p = _command(sub, "doctor", "rank the photos whose labels look wrong (cleanlab) and draw a contact sheet",
                 run_doctor)
    p.add_argument("data", nargs="+", help="one or more folders with one sub-folder per label")
    p.add_argument("--sheet", default="suspects.png", help="contact sheet PNG to write (default %(default)s; "
                   "'' for none)")
    p.add_argument("--limit", type=int, default=SHEET_LIMIT, help="photos on the contact sheet (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_options(p, DoctorConfig)


def run_doctor(args: argparse.Namespace) -> int:
    from huskyai.training.doctor import find_suspects, format_table, save_suspect_sheet, suspects_json

    with contextlib.redirect_stdout(sys.stderr):  # fastprogress bars too: stdout is the table or the JSON
        suspects = find_suspects(args.data, report=_stderr, **options_from(args, DoctorConfig))
    if args.sheet:
        _stderr(f"contact sheet: {save_suspect_sheet(suspects, args.sheet, limit=args.limit)}")
    print(suspects_json(suspects) if args.json else format_table(suspects))
    return 0


def add_verify(sub) -> None:
    p = _command(sub, "verify", "check every model file against the model card and who vouches for it", run_verify)
    p.add_argument("dir", nargs="?", help="export folder, shipped model's name or hf://OWNER/NAME@REVISION "
                                          "(default: the shipped model)")
    p.add_argument("--sha256", help="the sha256 of model.json you trust (or $HUSKYAI_MODEL_SHA256)")
    add_public_key_argument(p)
    p.add_argument("--trust-unsigned", action="store_true",
                   help="check an unsigned, unpinned export's files without failing on the missing signature "
                        "(load refuses it unless trusted the same way)")


def run_verify(args: argparse.Namespace) -> int:
    """Every check verify made, one line each; exit 1 wherever huskyai.load would refuse the export."""
    from huskyai.api import verify

    result = verify(args.dir, **model_options(args))
    for line in result.findings:
        print(f"OK   {line}")
    if result.pickle_note:
        print(f"NOTE {result.pickle_note}")
    for problem in result.problems:
        print(f"FAIL {problem}")
    return 0 if result.ok else 1


def add_sign(sub) -> None:
    p = _command(sub, "sign", "sign the model card with this machine's key, or with --key write model.sig, a "
                 "signature anyone can check with the public key (after verify's checks)", run_sign)
    p.add_argument("dir", nargs="?", help="export folder (default: the shipped model)")
    p.add_argument("--key", metavar="PRIVATE.pem",
                   help="sign with this EC private key (P-256, e.g. `openssl ecparam -name prime256v1 -genkey "
                        "-noout -out private.pem`): writes model.sig, an OpenSSF model signature (OMS) of the card "
                        "and every file it lists; load it elsewhere with --public-key")
    p.add_argument("--password", action="store_true", help="--key is encrypted: ask for its password")
    p.add_argument("--replace-signature", action="store_true",
                   help="re-sign a card signed with another (lost or rotated) key")
    p.add_argument("--report", help="a red-team report/summary.json for this model, added to the card as redteam.json")
    p.add_argument("--int8", nargs="+", metavar="DATA",
                   help="also add model.int8.onnx, calibrated on training photos from these folders (never the "
                        "card's held-out ones); serve it with HUSKYAI_PRECISION=int8")
    p.add_argument("--int8-photos", type=int, default=None, help="calibration photos (default 128)")
    p.add_argument("--reduce-range", action="store_true", help="7-bit INT8 weights (CPUs without VNNI)")


def run_sign(args: argparse.Namespace) -> int:
    from huskyai.api import sign
    from huskyai.errors import QuantizeError
    from huskyai.trust import exports

    password = None
    if args.password:
        import getpass

        password = getpass.getpass(f"password of {args.key}: ").encode()
    try:
        done = sign(args.dir, replace_signature=args.replace_signature, redteam_report=args.report,
                    int8_data=args.int8, int8_photos=args.int8_photos, reduce_range=args.reduce_range,
                    key=args.key, key_password=password)
    except QuantizeError as err:  # e.g. a calibration folder that is not there: the card is left as it was
        _err(str(err))
        return 1
    if done.added_onnx:
        print(f"added {exports.ONNX_NAME} (this export predates it)")
    if done.added_int8:
        print(f"added {exports.INT8_ONNX_NAME} (check it against fp32 with bench/quantize.py before serving it)")
    if done.fingerprint:
        signature = shlex.quote(str(done.folder / exports.SIGNATURE_NAME))
        folder = shlex.quote(str(done.folder))
        print(f"signed {done.folder / exports.CARD_NAME} and every file it lists with key {done.fingerprint} "
              f"({done.key}): {done.folder / exports.SIGNATURE_NAME}")
        print(f"check it anywhere with the public key: huskyai verify {folder} --public-key PUBLIC.pem\n"
              f"  or: model_signing verify key {folder} --signature {signature} --public_key PUBLIC.pem")
    else:
        print(f"signed {done.folder / exports.CARD_NAME} with {done.key}")
    print(f"card sha256 (pin it with {exports.MODEL_SHA256_ENV} where that key is not): {done.card_sha256}")
    return 0


def add_push(sub) -> None:
    p = _command(sub, "push", "upload an export to the Hugging Face Hub: the card, weights, ONNX graph(s), model.sig "
                 "and a model-card README; never a pickle (after verify's checks)", run_push)
    p.add_argument("dir", help="export folder")
    p.add_argument("repo", metavar="OWNER/NAME", help="the Hub repository (made if it does not exist)")
    p.add_argument("--sha256", help="the sha256 of model.json you trust (or $HUSKYAI_MODEL_SHA256)")
    add_public_key_argument(p)
    p.add_argument("--trust-unsigned", action="store_true", help="push an unsigned, unpinned export (its users "
                   "then pin its card's sha256)")
    p.add_argument("--license", default="mit", help="the licence in the README's metadata (default %(default)s)")
    p.add_argument("--private", action="store_true", help="make a new repository private")
    p.add_argument("--revision", help="the branch to commit to (default: main)")
    p.add_argument("--message", help="the commit message")
    p.add_argument("--dry-run", action="store_true", help="check and list what would be uploaded; upload nothing")
    p.add_argument("--stage", metavar="DIR", help="also write the files that are (or would be) uploaded to DIR, a "
                   "new folder")


def run_push(args: argparse.Namespace) -> int:
    from huskyai.api import push
    from huskyai.trust import exports

    done = push(args.dir, args.repo, **model_options(args), license=args.license, private=args.private,
                revision=args.revision, message=args.message, dry_run=args.dry_run, stage=args.stage)
    for name, data in done.files.items():
        print(f"{'would upload' if args.dry_run else 'uploaded'}\t{name}\t{len(data)} bytes\tsha256 "
              f"{exports.sha256(data)}")
    if done.stage:
        print(f"staged in {done.stage}")
    if args.dry_run:
        print(f"dry run: nothing uploaded to {args.repo} (trusted: {done.trust})")
        return 0
    how = "--public-key PUBLIC.pem" if exports.SIGNATURE_NAME in done.files else f"--sha256 {done.card_sha256}"
    print(f"pushed to {done.url}\nuse it: huskyai predict photo.jpg --model {done.source} {how}")
    return 0


def add_attack(sub) -> None:
    from huskyai.cli import attack as command

    p = _command(sub, "attack", "red-team the model: " + ", ".join(command.KINDS), command.run)
    command.add_arguments(p)
    add_model_arguments(p)


def add_serve(sub) -> None:
    p = _command(sub, "serve", "run the web app", run_serve)
    add_model_arguments(p)
    p.add_argument("--host", default=None, help="default 127.0.0.1 (or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="default 7860 (or GRADIO_SERVER_PORT)")


def run_serve(args: argparse.Namespace) -> int:
    from huskyai.serve.app import serve

    return serve(args.model, args.host, args.port, **model_options(args))


def add_mood(sub) -> None:
    from huskyai.cli.mood import add_mood as add_mood_commands

    add_mood_commands(sub)


COMMANDS = (add_train, add_predict, add_explain, add_evaluate, add_score, add_doctor, add_verify, add_sign,
            add_push, add_attack, add_serve, add_mood)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huskyai", description="Husky AI: is this a husky?")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def execute(args: argparse.Namespace) -> int:
    """Run the parsed command; an error meant for the user becomes one line on stderr and exit code 1."""
    try:
        return args.run(args)
    except HuskyAIError as err:  # a message for the user: one line, no traceback
        _err(str(err))
        return 1


def main(argv: list[str] | None = None) -> int:
    return execute(build_parser().parse_args(argv))
