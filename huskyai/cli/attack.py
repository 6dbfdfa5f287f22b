"""`python -m huskyai attack KIND`: the red-team kit from the command line.

Options left out run with the defaults of huskyai.redteam.report's functions, which are written there only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from huskyai.cli.common import model_options

KINDS = ("junk", "perturb", "query", "scaling", "tamper", "shortcut", "steal", "membership", "poison",
         "hopskipjump", "mood-evasion", "all")
NEEDS_DATA = ("perturb", "query", "shortcut", "steal", "membership", "poison", "hopskipjump", "all")
MANY_FOLDERS = ("perturb", "steal", "membership", "poison", "hopskipjump")  # the others take one --data folder
NO_ROBUST = "none"  # --robust none: perturb measures no noise-trained model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("attack", choices=KINDS)
    p.add_argument("--data", nargs="+", help="labelled folder (husky/, not_husky/) for " + ", ".join(NEEDS_DATA)
                   + "; several for " + ", ".join(MANY_FOLDERS) + " (steal ignores the labels)")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    given = argparse.SUPPRESS  # absent unless given: the attack function's own default applies
    p.add_argument("--n", type=int, default=given, help="junk: number of images; perturb: CERTIFY's noise samples "
                   "per photo for the noise-trained model's certificates (default 1000)")
    p.add_argument("--limit", type=int, default=given, help="perturb, query, shortcut, hopskipjump: photos to attack "
                   "(or to mask)")
    p.add_argument("--robust", metavar="PATH_OR_NAME", help="perturb: a noise-trained model (export folder or "
                   "shipped name) whose certified accuracy and smoothed classifier under attack join the report "
                   f"(default: the shipped \"robust\" model when it is installed; {NO_ROBUST}: skip); trusted by "
                   "--trust-unsigned and --public-key as --model is, or pinned by $HUSKYAI_ROBUST_MODEL_SHA256")
    p.add_argument("--certify-limit", type=int, default=given, help="perturb: photos to certify (at least --limit, "
                   "the default; the noise-trained model's held-out photos where its card lists them)")
    p.add_argument("--draws", type=int, default=given, help="perturb: noise draws per PGD step against the smoothed "
                   "classifier (expectation over transformation; default 4)")
    p.add_argument("--judge-n", type=int, default=given, help="perturb: CERTIFY's samples when judging an attacked "
                   "photo (default 100)")
    p.add_argument("--max-iter", type=int, default=given, help="hopskipjump: iterations per photo")
    p.add_argument("--steps", type=int, default=given, help="perturb: PGD steps")
    p.add_argument("--budget", type=int, default=given, help="query, hopskipjump: queries per photo")
    p.add_argument("--rate-limit", type=int, default=given, help="query, all: the app's per-minute limit to cost "
                   "against")
    p.add_argument("--cover", help="scaling: the innocent image (default: skimage coffee)")
    p.add_argument("--hidden", help="scaling: the hidden image (default: skimage chelsea)")
    p.add_argument("--budget-seconds", type=float, default=given, help="all: time budget")
    p.add_argument("--quick", action="store_true", default=given, help="all: small counts everywhere (seconds on a "
                   "toy model)")
    p.add_argument("--url", help="steal, hopskipjump: a running app (e.g. http://127.0.0.1:7860/) to query instead "
                   "of the Python predictor; run it with HUSKYAI_RATE_LIMIT=0")
    p.add_argument("--counts", type=int, nargs="+", default=given, help="steal: query counts for the curve")
    p.add_argument("--transfer-limit", type=int, default=given, help="steal: held-out photos to attack by transfer")
    p.add_argument("--query-limit", type=int, default=given, help="steal: photos for the query attack per API level")
    p.add_argument("--boots", type=int, default=given, help="membership: bootstrap resamples")
    p.add_argument("--fractions", type=float, nargs="+", default=given, help="poison: poisoned fractions")
    p.add_argument("--epochs", type=int, nargs="+", default=given, help="poison: fine-tuning epochs (0: head only)")
    p.add_argument("--radius", type=float, default=given, help="poison: the dot's radius, a fraction of the side")


def run(args: argparse.Namespace) -> int:
    """Run one attack (or all) on the model the arguments name; prints the summary, writes the report."""
    from huskyai import load
    from huskyai.extras import require

    require("redteam", "the red-team kit")
    if args.attack in NEEDS_DATA and not args.data:
        print(f"error: attack {args.attack} needs --data DIR (a folder per label)", file=sys.stderr)
        return 2
    if args.data and len(args.data) > 1 and args.attack not in MANY_FOLDERS:
        print(f"error: attack {args.attack} takes one --data folder", file=sys.stderr)
        return 2
    if args.attack == "mood-evasion":  # the mood model (--model: a mood export; default the shipped one)
        from huskyai.mood import load as load_mood
        from huskyai.mood.evasion import mood_evasion

        mood = load_mood(args.model, sha256=args.sha256, trust_unsigned=args.trust_unsigned)
        return _finish(mood_evasion(mood, _out(args), **_pick(vars(args), "limit")), args)
    if args.attack == "poison":  # trains its own models: needs no --model
        from huskyai.redteam.runs import run_poison

        return _finish(run_poison([Path(d) for d in args.data], _out(args), **_pick(vars(args), "fractions",
                                                                                    "epochs", "radius")), args)
    from huskyai.redteam import report, runs, suite
    from huskyai.redteam.shortcut import shortcut_check

    model = load(args.model, **model_options(args))
    out = _out(args)
    options = vars(args)  # holds only the attack options that were given
    data = Path(args.data[0]) if args.data else None
    folders = [Path(d) for d in args.data or []]
    attacks = {
        "junk": lambda: report.run_junk(model, out, **_pick(options, "n")),
        "perturb": lambda: report.run_perturb(model, folders, out, robust=_robust(args), **_pick(
            options, "limit", "steps", "n", "certify_limit", "draws", "judge_n")),
        "query": lambda: report.run_query(model, data, out, **_pick(options, "limit", "budget", "rate_limit")),
        "scaling": lambda: report.run_scaling(model, out, *_scaling_images(args)),
        "tamper": lambda: report.run_tamper(model.export_dir, out),
        "shortcut": lambda: shortcut_check(model, data, out, **_pick(options, "limit")),
        "steal": lambda: runs.run_steal(model, folders, out, args.url, **_pick(
            options, "counts", "transfer_limit", "query_limit", "budget", "rate_limit")),
        "hopskipjump": lambda: runs.run_hopskipjump(model, folders, out, args.url, **_pick(
            options, "limit", "max_iter", "rate_limit", "budget")),
        "membership": lambda: runs.run_membership(model, folders, out, **_pick(options, "boots")),
        "all": lambda: suite.run_all(model, data, out, **_pick(options, "budget_seconds", "rate_limit", "quick")),
    }
    try:
        return _finish(attacks[args.attack](), args)
    except (ValueError, FileNotFoundError) as err:  # photos that cannot serve this attack: say why
        print(f"error: attack {args.attack}: {err}", file=sys.stderr)
        return 2


def _robust(args: argparse.Namespace):
    """The noise-trained model --robust names (default: the shipped one, when installed), or None; one line and
    exit 1 (NotCertifiableError) for a model that was not trained under noise."""
    from huskyai import load
    from huskyai.inference.certify import card_sigma
    from huskyai.trust.exports import CARD_NAME, ROBUST_EXPORT, ROBUST_NAME

    name = args.robust
    if name == NO_ROBUST or (name is None and not (ROBUST_EXPORT / CARD_NAME).is_file()):
        return None
    options = model_options(args)
    options.pop("sha256")  # --sha256 pins --model; the robust model's pin is its own variable
    robust = load(name or ROBUST_NAME, **options)
    card_sigma(robust.card)
    return robust


def _out(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _finish(result: dict, args: argparse.Namespace) -> int:
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=2))
    print(f"report written to {args.out}")
    return 0


def _pick(options: dict, *names: str) -> dict:
    return {name: options[name] for name in names if name in options}


def _scaling_images(args: argparse.Namespace) -> tuple:
    from PIL import Image
    from skimage import data as skdata

    from huskyai.images.decode import load_image

    cover = load_image(args.cover) if args.cover else Image.fromarray(skdata.coffee())
    hidden = load_image(args.hidden) if args.hidden else Image.fromarray(skdata.chelsea())
    return cover, hidden
