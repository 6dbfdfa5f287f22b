"""``python -m huskyai mood {sample,train,predict,evaluate}``: the mood model's commands, in huskyai.cli.main's
style (``add_NAME(sub)`` builds the parser with ``run=run_NAME``; ``run_NAME(args) -> exit code``).
DiaryError is a huskyai.images.folders.DataError, so huskyai.cli.main prints it as one ``error: ...`` line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="mood export folder (default: the shipped one, trained on a synthetic diary)")
    p.add_argument("--sha256", help="trust the export whose model.json has this sha256")
    p.add_argument("--trust-unsigned", action="store_true", help="load an unsigned, unpinned export anyway")


def add_mood(sub) -> None:
    text = "the mood model: predict a day's mood from a daily diary (CSV)"
    p = sub.add_parser("mood", help=text, description=text)
    steps = p.add_subparsers(dest="mood_command", required=True)
    s = steps.add_parser("sample", help="write a SYNTHETIC diary (and the true effects beside it)")
    s.set_defaults(run=run_sample)
    s.add_argument("--days", type=int, default=365)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="diary.csv", help="CSV to write (default: %(default)s)")
    t = steps.add_parser("train", help="validate by time, export the best model with its card")
    t.set_defaults(run=run_mood_train)
    t.add_argument("--csv", required=True, help="the diary: date, feature columns, target")
    t.add_argument("--out", default="export-mood", help="export folder (default: %(default)s)")
    t.add_argument("--target", default="mood", help="the column to predict (default: %(default)s)")
    t.add_argument("--models", default="ridge,hgb,fastai", help="comma-separated (default: %(default)s)")
    t.add_argument("--folds", type=int, default=4, help="time-ordered folds (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-sign", action="store_true", help="do not sign the card with this machine's key")
    for name, run, text in (("predict", run_mood_predict, "predict the mood of each day in a CSV"),
                            ("evaluate", run_mood_evaluate, "score the model on a diary with moods")):
        q = steps.add_parser(name, help=text)
        q.set_defaults(run=run)
        q.add_argument("--csv", required=True)
        q.add_argument("--json", action="store_true", help="print JSON")
        _model_arguments(q)


def run_sample(args: argparse.Namespace) -> int:
    from huskyai.mood.diary import DiaryError
    from huskyai.mood.sample import write_sample

    if args.days < 1:
        raise DiaryError(f"--days {args.days}: a diary needs at least one day")
    if not Path(args.out).resolve().parent.is_dir():
        raise DiaryError(f"{args.out}: the folder {Path(args.out).resolve().parent} does not exist")
    csv, truth = write_sample(args.out, args.days, args.seed)
    print(f"wrote {csv} ({args.days} days, SYNTHETIC) and its true effects in {truth}")
    return 0


def run_mood_train(args: argparse.Namespace) -> int:
    from huskyai.mood.diary import DiaryError
    from huskyai.mood.export import train_export

    if args.folds < 2:
        raise DiaryError(f"--folds {args.folds}: validation by time needs at least 2 folds")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    card = train_export(args.csv, args.out, args.target, models, args.folds, args.seed, sign=not args.no_sign)
    print(summary(card))
    return 0


def summary(card: dict) -> str:
    """The validation table: every model and baseline, MAE and RMSE, the winner marked."""
    v = card["validation"]
    lines = [f"validation: {v['days']} days in {len(v['folds'])} time-ordered folds"
             + (" (SYNTHETIC diary)" if card["data"].get("synthetic") else "")]
    for name, m in sorted(v["metrics"].items(), key=lambda kv: kv[1]["mae"]):
        kind = "baseline" if name in v["baselines"] else f"model, fit {v['fit_seconds'][name]:.1f} s"
        mark = "  <- ships" if name == v["winner"] else ""
        lines.append(f"  {name:<13} MAE {m['mae']:.3f}  RMSE {m['rmse']:.3f}  ({kind}){mark}")
    top = ", ".join(row["feature"] for row in card["importance"][:5])
    lines.append(f"most important: {top}; training took {card['training']['total_seconds']:.1f} s")
    return "\n".join(lines)


def _load(args: argparse.Namespace):
    from huskyai.mood.model import load

    return load(args.model, sha256=args.sha256, trust_unsigned=args.trust_unsigned)


def run_mood_predict(args: argparse.Namespace) -> int:
    from huskyai.mood.diary import read_diary

    model = _load(args)
    diary = read_diary(args.csv, model.target, min_days=1, require_target=False)
    for problem in diary.problems:
        print(f"note: {problem}", file=sys.stderr)
    absent = [c for c in model.numeric + model.categorical if c not in diary.days.columns]
    if absent:  # predicted all the same, as unknown: say so, or a renamed column would go unnoticed
        print(f"note: {args.csv} has no column {', '.join(absent)}; treated as unknown on every day",
              file=sys.stderr)
    predictions = model.predict(diary.days)
    if args.json:
        print(json.dumps([asdict(p) for p in predictions], indent=1))
        return 0
    for p in predictions:
        why = ", ".join(f"{r['feature']} {r['push']:+.2f}" for r in p.reasons[:3])
        print(f"{p.date}  mood {p.mood:.2f} (~{p.score})  because {why}")
    return 0


def run_mood_evaluate(args: argparse.Namespace) -> int:
    from huskyai.mood.evaluation import evaluate

    result = evaluate(_load(args), args.csv)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['days']} days of {args.csv}")
    for name, m in result["metrics"].items():
        print(f"  {name:<13} MAE {m['mae']:.3f}  RMSE {m['rmse']:.3f}")
    return 0
