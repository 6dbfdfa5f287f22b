"""Command line: python -m huskyai {train,predict,evaluate,verify,sign,attack,serve}."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .backbones import ARCHS, DEFAULT_ARCH


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, nargs="+",
                   help="folder(s) with one sub-folder per label (husky/, not_husky/); several are combined")
    p.add_argument("--out", default="export", help="export folder to write (default: export)")
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=sorted(ARCHS), help=f"backbone (default {DEFAULT_ARCH})")
    p.add_argument("--weights", help="pretrained backbone weights file (e.g. for resnet34 offline)")
    p.add_argument("--epochs", type=int, default=0,
                   help="fastai fine-tuning epochs over the whole network after the head is fitted (default 0)")
    p.add_argument("--lr", type=float, default=1e-4, help="backbone learning rate when fine-tuning (head: 10x)")
    p.add_argument("--size", type=int, help="input size in pixels (default: the backbone's own)")
    p.add_argument("--positive", default="husky", help="name of the positive class folder (default: husky)")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="fraction of each class kept out of training and reported as a test set")
    p.add_argument("--valid-pct", type=float, default=0.2, help="validation fraction (default 0.2)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--junk", type=int, default=0,
                   help="add N generated junk images (noise, solid colours, patterns) to the negatives")
    p.add_argument("--cv", type=int, default=0,
                   help="repeat a 5-fold cross-validation of the head N times; metrics with 95%% intervals on the card")
    p.add_argument("--plain-head", action="store_true",
                   help="no zero-shot stage (ImageNet's husky scores and margins) in the head")
    p.add_argument("--pickle", action="store_true",
                   help="also write fastai's learner.pkl (anyone loading it with fastai runs what it holds)")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="export folder (default: the shipped model)")
    p.add_argument("--sha256", help="trust the export whose model.json has this sha256 (or $HUSKYAI_MODEL_SHA256)")
    p.add_argument("--trust-unsigned", action="store_true",
                   help="load an unsigned, unpinned export anyway (shown in the audit log and the app)")


def run_train(args: argparse.Namespace) -> int:
    from .artifacts import IntegrityError
    from .backbones import BackboneError
    from .data import DataError
    from .training import train

    try:
        train(args.data, args.out, arch=args.arch, epochs=args.epochs, size=args.size, positive=args.positive,
              holdout=args.holdout, valid_pct=args.valid_pct, seed=args.seed, lr=args.lr, weights=args.weights,
              junk=args.junk, cv=args.cv, zero_shot=not args.plain_head,
              pickle=args.pickle)
    except (DataError, BackboneError, IntegrityError) as err:  # train.py calls this directly, not via main()
        _err(str(err))
        return 1
    return 0


def _load(args: argparse.Namespace):
    from . import load

    return load(args.model, sha256=args.sha256, trust_unsigned=args.trust_unsigned)


def run_predict(args: argparse.Namespace) -> int:
    import getpass

    from .audit import AuditLog, audited_predict
    from .images import InvalidImageError, read_limited

    model = _load(args)
    audit = AuditLog()
    client = f"cli:{getpass.getuser()}"
    results, failed = [], 0
    for f in args.files:
        try:
            data = read_limited(f)
            p = audited_predict(model, data, name=Path(f).name, source="cli", client=client, log=audit)
        except InvalidImageError as err:
            failed += 1
            results.append({"file": f, "error": str(err)})
            if not args.json:
                _err(str(err))
            continue
        results.append({"file": f, "label": p.label, "probability": round(p.positive_probability, 6),
                        "scores": {k: round(v, 6) for k, v in p.scores.items()}})
        if not args.json:
            print(f"{f}\t{p.label}\t{p.positive_probability:.3f}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate
    from .metrics import format_metrics

    model = _load(args)
    result = evaluate(model, args.data, report=lambda msg: print(msg, file=sys.stderr))
    if args.sheet and not result["errors"]:
        print(f"no misclassified photos: no contact sheet written to {args.sheet}", file=sys.stderr)
    elif args.sheet:
        from .evaluation import save_contact_sheet

        save_contact_sheet(result["errors"], args.sheet)
        print(f"contact sheet of {len(result['errors'])} misclassified photos: {args.sheet}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_metrics(result))
        for source, m in result.get("by_source", {}).items():
            print(f"  {source}: {format_metrics(m)}")
        for e in result["errors"]:
            print(f"  wrong: {e['file']}  truth={e['truth']}  predicted={e['predicted']}  p={e['probability']:.3f}")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    import contextlib

    from .backbones import BackboneError
    from .doctor import find_suspects, format_table, save_suspect_sheet, suspects_json

    try:
        with contextlib.redirect_stdout(sys.stderr):  # progress on stderr: stdout is the table or the JSON
            suspects = find_suspects(args.data, arch=args.arch, size=args.size, folds=args.folds, seed=args.seed,
                                     positive=args.positive, filter_by=args.filter_by,
                                     report=lambda msg: print(msg, file=sys.stderr))
    except BackboneError as err:
        _err(str(err))
        return 1
    if args.sheet:
        print(f"contact sheet: {save_suspect_sheet(suspects, args.sheet, limit=args.limit)}", file=sys.stderr)
    print(suspects_json(suspects) if args.json else format_table(suspects))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from . import artifacts
    from .picklecheck import scan_pickle

    folder = Path(args.dir) if args.dir else artifacts.DEFAULT_EXPORT
    problems, ok = verify_report(folder)
    for line in ok:
        print(f"OK   {line}")
    pickle = folder / artifacts.LEARNER_NAME
    if pickle.is_file() and not pickle.is_symlink():  # information: Husky AI itself never unpickles it
        report = scan_pickle(pickle)
        problems += report.problems
        if report.clean:
            print(f"NOTE {artifacts.LEARNER_NAME}: its {report.n_globals} imports are all within the Husky AI "
                  "learner policy; that does not make a pickle safe (Husky AI never opens it)")
    for p in problems:
        print(f"FAIL {p}")
    return 1 if problems else 0


def verify_report(folder: Path) -> tuple[list[str], list[str]]:
    """(problems, findings) for an export: its files against the card, then whether the card is trusted."""
    from . import artifacts

    card, problems, _ = artifacts.check_files(folder)
    if card is None or problems:
        return problems, []
    ok = [f"every file in {folder} matches its model card ({', '.join(card['files'])})"]
    try:
        ok.append("trusted: " + artifacts.open_export(folder).trust)
    except artifacts.IntegrityError as err:
        if "not signed and not pinned" not in str(err):
            return [str(err)], ok
        ok.append("UNSIGNED: huskyai.load refuses it until it is signed (`python -m huskyai sign DIR`), "
                  "pinned (sha256=...) or trusted explicitly (--trust-unsigned)")
    return [], ok


def run_sign(args: argparse.Namespace) -> int:
    from . import artifacts
    from .picklecheck import scan_pickle

    folder = Path(args.dir) if args.dir else artifacts.DEFAULT_EXPORT
    card, problems, files = artifacts.check_files(folder)
    if card is not None and not problems and artifacts.LEARNER_NAME in files:
        problems = scan_pickle(folder / artifacts.LEARNER_NAME).problems
    if card is not None and not problems and "signature" in card and not args.replace_signature:
        problems, _ = verify_report(folder)  # a card signed with another key is not silently re-blessed
        problems = [p + " (after a key change, --replace-signature signs it anew)" for p in problems]
    if card is None or problems:  # never bless what verify refuses
        for p in problems:
            _err(p)
        return 1
    if args.report:  # the app's model card shows a red-team summary only when the card hashes it
        problem = _add_report(folder, card, Path(args.report))
        if problem:
            _err(problem)
            return 1
    if artifacts.ONNX_NAME not in files:  # an export made before 2026-11-28: add the graph it now ships
        from .engine import onnx_bytes, torch_network

        net = torch_network(card["arch"], len(card["classes"]), files[artifacts.WEIGHTS_NAME])
        graph = onnx_bytes(net, int(card["input_size"]))
        (folder / artifacts.ONNX_NAME).write_bytes(graph)
        card["files"][artifacts.ONNX_NAME] = artifacts.sha256(graph)
        print(f"added {artifacts.ONNX_NAME} (this export predates it)")
    key = artifacts.signing_key(create=True)
    artifacts.save_card(folder, card, key)
    where = f"${artifacts.SIGNING_KEY_ENV}" if os.environ.get(artifacts.SIGNING_KEY_ENV) else artifacts.key_path()
    print(f"signed {folder / artifacts.CARD_NAME} with {where}")
    print(f"card sha256 (pin it with {artifacts.MODEL_SHA256_ENV} where that key is not): "
          f"{artifacts.sha256((folder / artifacts.CARD_NAME).read_bytes())}")
    return 0


def _add_report(folder: Path, card: dict, report: Path) -> str | None:
    """Copy a red-team summary.json into the export as redteam.json, if it was made for these weights."""
    from . import artifacts

    try:
        data = report.read_bytes()
        summary = json.loads(data)
    except (OSError, ValueError) as err:
        return f"{report}: cannot read the red-team summary ({err})"
    if not isinstance(summary, dict) or summary.get("weights_sha256") != card["files"][artifacts.WEIGHTS_NAME]:
        return f"{report}: this red-team summary was not made for the model in {folder}"
    (folder / artifacts.REDTEAM_NAME).write_bytes(data)
    card["files"][artifacts.REDTEAM_NAME] = artifacts.sha256(data)
    return None


def run_attack(args: argparse.Namespace) -> int:
    from .redteam import report

    model = _load(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kind = args.attack
    if kind in ("perturb", "query", "all") and not args.data:
        _err(f"attack {kind} needs --data DIR (a folder per label)")
        return 2
    if kind == "junk":
        result = report.run_junk(model, out, n=args.n)
    elif kind == "perturb":
        result = report.run_perturb(model, Path(args.data), out, limit=args.limit or 16, steps=args.steps)
    elif kind == "query":
        result = report.run_query(model, Path(args.data), out, limit=args.limit or 8, budget=args.budget,
                                  rate_limit=args.rate_limit)
    elif kind == "scaling":
        from PIL import Image
        from skimage import data as skdata

        from .images import load_image

        cover = load_image(args.cover) if args.cover else Image.fromarray(skdata.coffee())
        hidden = load_image(args.hidden) if args.hidden else Image.fromarray(skdata.chelsea())
        result = report.run_scaling(model, out, cover, hidden)
    elif kind == "tamper":
        result = report.run_tamper(model.export_dir, out)
    else:
        result = report.run_all(model, Path(args.data), out, budget_seconds=args.budget_seconds,
                                rate_limit=args.rate_limit)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=2))
    print(f"report written to {out}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from .serving import serve

    return serve(args.model, args.host, args.port, sha256=args.sha256, trust_unsigned=args.trust_unsigned)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m huskyai", description="Husky AI: is this a husky?")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train on a photo folder and export a model")
    add_train_arguments(p)
    p.set_defaults(run=run_train)

    p = sub.add_parser("predict", help="classify photos")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arguments(p)
    p.set_defaults(run=run_predict)

    p = sub.add_parser("evaluate", help="score the model on a folder-per-label photo set")
    p.add_argument("data", nargs="+", help="folder(s) with husky/ and not_husky/ (several: also scored by folder)")
    p.add_argument("--sheet", help="save a contact sheet (PNG) of the misclassified photos")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arguments(p)
    p.set_defaults(run=run_evaluate)

    from .doctor import FILTERS

    p = sub.add_parser("doctor", help="rank the photos whose labels look wrong (cleanlab) and draw a contact sheet")
    p.add_argument("data", nargs="+", help="one or more folders with one sub-folder per label")
    p.add_argument("--sheet", default="suspects.png", help="contact sheet PNG to write (default suspects.png; "
                   "'' for none)")
    p.add_argument("--limit", type=int, default=60, help="photos on the contact sheet (default 60)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=sorted(ARCHS), help=f"backbone (default {DEFAULT_ARCH})")
    p.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--positive", default="husky", help="name of the positive class folder (default: husky)")
    p.add_argument("--filter-by", default="prune_by_noise_rate", choices=FILTERS,
                   help="cleanlab's rule for which photos to flag (default prune_by_noise_rate; "
                   "predicted_neq_given flags every out-of-fold disagreement)")
    p.set_defaults(run=run_doctor)

    p = sub.add_parser("verify", help="check every model file against the model card's hashes")
    p.add_argument("dir", nargs="?", help="export folder (default: the shipped model)")
    p.set_defaults(run=run_verify)

    p = sub.add_parser("sign", help="sign the model card with this machine's key (after checking every hash)")
    p.add_argument("dir", nargs="?", help="export folder (default: the shipped model)")
    p.add_argument("--replace-signature", action="store_true",
                   help="re-sign a card signed with another (lost or rotated) key")
    p.add_argument("--report", help="a red-team report/summary.json for this model, added to the card as redteam.json")
    p.set_defaults(run=run_sign)

    p = sub.add_parser("attack", help="red-team the model: junk, perturb, query, scaling, tamper or all")
    p.add_argument("attack", choices=["junk", "perturb", "query", "scaling", "tamper", "all"])
    p.add_argument("--data", help="labelled folder (husky/, not_husky/) for perturb, query and all")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    add_model_arguments(p)
    p.add_argument("--n", type=int, default=1000, help="junk: number of images (default 1000)")
    p.add_argument("--limit", type=int, help="perturb/query: photos to attack (default 16 / 8)")
    p.add_argument("--steps", type=int, default=10, help="perturb: PGD steps (default 10)")
    p.add_argument("--budget", type=int, default=300, help="query: queries per photo (default 300)")
    p.add_argument("--rate-limit", type=int, default=30, help="query: the app's per-minute limit to cost against")
    p.add_argument("--cover", help="scaling: the innocent image (default: skimage coffee)")
    p.add_argument("--hidden", help="scaling: the hidden image (default: skimage chelsea)")
    p.add_argument("--budget-seconds", type=float, default=900, help="all: time budget (default 900)")
    p.set_defaults(run=run_attack)

    p = sub.add_parser("serve", help="run the web app")
    add_model_arguments(p)
    p.add_argument("--host", default=None, help="default 127.0.0.1 (or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="default 7860 (or GRADIO_SERVER_PORT)")
    p.set_defaults(run=run_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .artifacts import IntegrityError
    from .data import DataError
    from .engine import EngineError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (IntegrityError, DataError, EngineError) as err:
        _err(str(err))
        return 1
