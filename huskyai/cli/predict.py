"""The CLI's scoring commands: ``predict`` (optionally with a heatmap per photo), ``explain`` (``predict`` with a
heatmap per photo, under the name people type) and ``evaluate`` (optionally with each mistake's heatmap on the
contact sheet). Their options' defaults come from huskyai.training.config.

``predict`` prints a tab-separated table whose header names its columns: file, label, and P(<positive class>),
the probability of the positive class whatever the label (as ``--json``'s "probability" and score's
positive_probability); with heatmaps, the overlay's file and the method that drew it. ``predict --certify``
answers each photo with a certified radius instead (randomized smoothing, huskyai.inference.certify), on the
noise-trained model unless ``--model`` names another: one line a photo, the answer in words and its time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from huskyai.cli.common import add_model_arguments, command, model_options, picture_path_problem, stderr, user_error
from huskyai.inference.certify import DEFAULT_N, card_sigma
from huskyai.training.config import ExplainConfig, add_options, options_from
from huskyai.trust.exports import ROBUST_NAME

CERTIFY_SOURCE = "cli-certify"  # the audit log's source for a certified answer
JSON_HELP = ("print JSON instead: a list with, for each photo, file, label, probability (of the positive class, "
             "husky, whatever the label), scores (each class's probability) and, with a heatmap, explanation (its "
             "file) and method; a photo that cannot be read gives file and error")


def add_predict(sub) -> None:
    p = command(sub, "predict", "classify photos: a table of file, label and P(husky)", run_predict)
    p.add_argument("files", nargs="+", metavar="PHOTO")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--explain", metavar="OUT.png", help="also save where the model looked, the photo with its "
                   "heatmap (with several files: OUT-<name>.png for each); the same as `huskyai explain`")
    p.add_argument("--certify", action="store_true", help="answer with a certified radius (randomized smoothing): "
                   "no change of the photo within it flips the answer. Uses the noise-trained model (\"robust\") "
                   "unless --model names another; about n + 100 predictions a photo (seconds, not milliseconds)")
    p.add_argument("--n", type=int, default=DEFAULT_N, metavar="N", help="with --certify: the noise samples the "
                   "answer is estimated from (default: %(default)s; more samples prove larger radii, more slowly)")
    add_options(p, ExplainConfig)
    add_model_arguments(p)


def add_explain(sub) -> None:
    p = command(sub, "explain", "show where the model looked: each photo with its heatmap, saved as a PNG "
                "(the same as `huskyai predict --explain`)", run_explain)
    p.add_argument("files", nargs="+", metavar="PHOTO")
    p.add_argument("--out", default="heatmap.png", metavar="OUT.png", help="the picture to write (default: "
                   "%(default)s; with several photos: OUT-<name>.png for each)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    add_options(p, ExplainConfig)
    add_model_arguments(p)


def run_explain(args: argparse.Namespace) -> int:
    """``predict --explain OUT``, under the name people type."""
    args.explain = args.out
    return run_predict(args)


def explain_paths(out: str | Path, files: list[str]) -> list[Path]:
    """Where each file's overlay goes: ``out`` for one file; else ``out``'s stem, a dash and the file's stem
    (numbered where two files share a stem), with ``out``'s suffix (.png when it has none)."""
    out = Path(out)
    suffix = out.suffix or ".png"
    if len(files) == 1:
        return [out.with_suffix(suffix)]
    stems = [Path(f).stem for f in files]
    return [out.with_name(f"{out.stem}-{stem}{'' if stems.count(stem) == 1 else f'-{i + 1}'}{suffix}")
            for i, stem in enumerate(stems)]


def run_predict(args: argparse.Namespace) -> int:
    import getpass

    from huskyai import load
    from huskyai.audit import AuditLog

    if getattr(args, "certify", False):
        if args.explain:
            user_error("--certify and --explain answer differently: ask for one of them at a time")
            return 1
        return run_certify(args)
    if args.explain and (problem := picture_path_problem(args.explain)):
        user_error(problem)
        return 1
    model = load(args.model, **model_options(args))
    audit, client = AuditLog(), f"cli:{getpass.getuser()}"
    maps = explain_paths(args.explain, args.files) if args.explain else [None] * len(args.files)
    if not args.json:
        print("\t".join(["file", "label", f"P({model.positive})", *(["heatmap", "method"] if args.explain else [])]))
    results = [_predict_one(model, f, out, args, audit, client) for f, out in zip(args.files, maps)]
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results) else 0


def _predict_one(model, file: str, out: Path | None, args: argparse.Namespace, audit, client: str) -> dict:
    """One file's answer as a dict (printed as a line unless --json), its overlay saved to ``out`` if given."""
    from huskyai.audit import audited_explain, audited_predict
    from huskyai.errors import InvalidImageError
    from huskyai.images.decode import read_limited

    shown = None
    try:
        data, name = read_limited(file), Path(file).name
        if out is None:
            p = audited_predict(model, data, name=name, source="cli", client=client, log=audit)
        else:
            shown = audited_explain(model, data, name=name, source="cli", client=client, log=audit,
                                    method=args.explain_method)
            shown.save(out)
            p = shown.prediction
    except (InvalidImageError, OSError) as err:
        message = str(err) if isinstance(err, InvalidImageError) else f"cannot write {out}: {err.strerror or err}"
        if not args.json:
            user_error(message)
        return {"file": file, "error": message}
    result = {"file": file, "label": p.label, "probability": round(p.positive_probability, 6),
              "scores": {k: round(v, 6) for k, v in p.scores.items()}}
    if shown is not None:
        result |= {"explanation": str(out), "method": shown.method}
    if not args.json:
        print("\t".join([file, p.label, f"{p.positive_probability:.3f}", *([str(out), shown.method] if shown else [])]))
    return result


def run_certify(args: argparse.Namespace) -> int:
    """``predict --certify``: each photo's certified answer in words, and the time it took (or --json)."""
    import getpass

    from huskyai import load
    from huskyai.audit import AuditLog

    model = load(args.model or ROBUST_NAME, **model_options(args))
    card_sigma(model.card)  # NotCertifiableError (one line) before any photo is read
    audit, client = AuditLog(), f"cli:{getpass.getuser()}"
    results = [_certify_one(model, f, args, audit, client) for f in args.files]
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results) else 0


def _certify_one(model, file: str, args: argparse.Namespace, audit, client: str) -> dict:
    """One file's certificate as a dict, printed as a line unless --json."""
    from huskyai.audit import audited_predict
    from huskyai.errors import InvalidImageError
    from huskyai.images.decode import read_limited

    made = []

    def certified(data: bytes, name: str | None = None):
        made.append(model.certify(data, n=args.n, name=name))
        return made[-1].prediction()

    try:
        audited_predict(model, read_limited(file), name=Path(file).name, source=CERTIFY_SOURCE, client=client,
                        log=audit, predict=certified)
    except (InvalidImageError, OSError) as err:
        message = str(err) if isinstance(err, InvalidImageError) else f"{file}: {err.strerror or err}"
        if not args.json:
            user_error(message)
        return {"file": file, "error": message}
    cert = made[-1]
    if not args.json:
        print(f"{file}: {cert.describe()} ({cert.seconds:.1f} s)")
    return {"file": file, "label": cert.label, "certified": cert.certified, "radius": round(cert.radius, 6),
            "sigma": cert.sigma, "n0": cert.n0, "n": cert.n, "alpha": cert.alpha, "seconds": round(cert.seconds, 3),
            "verdict": cert.describe()}


def add_evaluate(sub) -> None:
    p = command(sub, "evaluate", "score the model on a folder-per-label photo set", run_evaluate)
    p.add_argument("data", nargs="+", help="folder(s) with husky/ and not_husky/ (several: also scored by folder)")
    p.add_argument("--sheet", help="save a contact sheet (PNG) of the misclassified photos")
    p.add_argument("--explain", action="store_true", help="draw each misclassified photo on the contact sheet as "
                   "its heatmap: where the model looked")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_options(p, ExplainConfig)
    add_model_arguments(p)


def run_evaluate(args: argparse.Namespace) -> int:
    from huskyai.api import evaluate
    from huskyai.evaluation.metrics import format_evaluation

    if args.explain and not args.sheet:
        user_error("--explain draws the heatmaps on the contact sheet: name it with --sheet FILE.png")
        return 1
    if args.sheet and (problem := picture_path_problem(args.sheet)):
        user_error(problem)
        return 1
    model = args.model
    if args.public_key:  # evaluate loads a folder as huskyai.load does, without a public key: load it here
        from huskyai.api import load

        model = load(args.model, **model_options(args))
    result = evaluate(model, args.data, sheet=args.sheet, sha256=args.sha256, trust_unsigned=args.trust_unsigned,
                      report=stderr, explain=args.explain, **options_from(args, ExplainConfig))
    print(json.dumps(result, indent=2) if args.json else format_evaluation(result))
    return 0
