"""`python -m huskyai attack KIND`: the red-team kit from the command line.

Options left out run with the defaults of huskyai.redteam.report's functions, which are written there only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KINDS = ("junk", "perturb", "query", "scaling", "tamper", "shortcut", "all")
NEEDS_DATA = ("perturb", "query", "shortcut", "all")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("attack", choices=KINDS)
    p.add_argument("--data", help="labelled folder (husky/, not_husky/) for " + ", ".join(NEEDS_DATA))
    p.add_argument("--out", default="report", help="output folder (default: report)")
    given = argparse.SUPPRESS  # absent unless given: the attack function's own default applies
    p.add_argument("--n", type=int, default=given, help="junk: number of images")
    p.add_argument("--limit", type=int, default=given, help="perturb, query, shortcut: photos to attack (or to mask)")
    p.add_argument("--steps", type=int, default=given, help="perturb: PGD steps")
    p.add_argument("--budget", type=int, default=given, help="query: queries per photo")
    p.add_argument("--rate-limit", type=int, default=given, help="query, all: the app's per-minute limit to cost "
                   "against")
    p.add_argument("--cover", help="scaling: the innocent image (default: skimage coffee)")
    p.add_argument("--hidden", help="scaling: the hidden image (default: skimage chelsea)")
    p.add_argument("--budget-seconds", type=float, default=given, help="all: time budget")


def run(args: argparse.Namespace) -> int:
    """Run one attack (or all) on the model the arguments name; prints the summary, writes the report."""
    from .. import load
    from ..extras import require

    require("redteam", "the red-team kit")
    if args.attack in NEEDS_DATA and not args.data:
        print(f"error: attack {args.attack} needs --data DIR (a folder per label)", file=sys.stderr)
        return 2
    from . import report
    from .shortcut import shortcut_check

    model = load(args.model, sha256=args.sha256, trust_unsigned=args.trust_unsigned)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = vars(args)  # holds only the attack options that were given
    attacks = {
        "junk": lambda: report.run_junk(model, out, **_pick(options, "n")),
        "perturb": lambda: report.run_perturb(model, Path(args.data), out, **_pick(options, "limit", "steps")),
        "query": lambda: report.run_query(model, Path(args.data), out, **_pick(options, "limit", "budget",
                                                                               "rate_limit")),
        "scaling": lambda: report.run_scaling(model, out, *_scaling_images(args)),
        "tamper": lambda: report.run_tamper(model.export_dir, out),
        "shortcut": lambda: shortcut_check(model, Path(args.data), out, **_pick(options, "limit")),
        "all": lambda: report.run_all(model, Path(args.data), out, **_pick(options, "budget_seconds", "rate_limit")),
    }
    result = attacks[args.attack]()
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=2))
    print(f"report written to {out}")
    return 0


def _pick(options: dict, *names: str) -> dict:
    return {name: options[name] for name in names if name in options}


def _scaling_images(args: argparse.Namespace) -> tuple:
    from PIL import Image
    from skimage import data as skdata

    from ..images import load_image

    cover = load_image(args.cover) if args.cover else Image.fromarray(skdata.coffee())
    hidden = load_image(args.hidden) if args.hidden else Image.fromarray(skdata.chelsea())
    return cover, hidden
