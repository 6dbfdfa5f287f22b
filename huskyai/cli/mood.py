"""``python -m huskyai mood {sample,train,predict,evaluate}``: the mood model's commands, in huskyai.cli.main's
style (``add_NAME(sub)`` builds the parser with ``run=run_NAME``; ``run_NAME(args) -> exit code``).
DiaryError is a huskyai.errors.DataError, so huskyai.cli.main prints it as one ``error: ...`` line."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="mood export folder (default: the shipped one, trained on a synthetic diary)")
    p.add_argument("--sha256", help="trust the export whose model.json has this sha256 (or "
                   "$HUSKYAI_MOOD_MODEL_SHA256)")
    p.add_argument("--trust-unsigned", action="store_true", help="load an unsigned, unpinned export anyway")


def add_mood(sub) -> None:
    from huskyai.api import DEFAULT_OUT
    from huskyai.mood.models import MODELS

    text = "the mood model: predict a day's mood from a daily diary (CSV)"
    p = sub.add_parser("mood", help=text, description=text)
    steps = p.add_subparsers(dest="mood_command", required=True)
    s = steps.add_parser("sample", help="write a SYNTHETIC diary (and the true effects beside it)")
    s.set_defaults(run=run_sample)
    s.add_argument("--days", type=int, default=365, help="calendar days the diary spans; about 3%% of them are "
                   "left out, as a real diary has gaps (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="the generator's seed (default: %(default)s; with 365 days, "
                   "the shipped model's own training diary)")
    s.add_argument("--out", default="diary.csv", help="CSV to write (default: %(default)s)")
    t = steps.add_parser("train", help="validate by time, export the best model with its card (needs the mood "
                         "extra: pip install 'huskyai[mood]')")
    t.set_defaults(run=run_mood_train)
    t.add_argument("--csv", required=True, help="the diary: date, feature columns, target")
    default_out = DEFAULT_OUT.format(kind="mood", time="<date>-<time>")
    t.add_argument("--out", help=f"export folder (default: a new {default_out}; the shipped model stays as it is)")
    t.add_argument("--target", default="mood", help="the column to predict (default: %(default)s)")
    t.add_argument("--models", help=f"comma-separated, from {','.join(MODELS)} (default: all of them; fastai only "
                   "where the train extra is installed)")
    t.add_argument("--folds", type=int, default=4, help="time-ordered folds (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-sign", action="store_true", help="do not sign the card with this machine's key")
    for name, run, text, csv in (
            ("predict", run_mood_predict, "predict the mood of each day in a CSV, with the reasons",
             "the diary: a date column and the feature columns (a mood column is not needed)"),
            ("evaluate", run_mood_evaluate, "score the model on a diary with moods, against simple baselines",
             "a diary with moods; days the model was trained on are flagged, as their numbers are in-sample")):
        q = steps.add_parser(name, help=text, description=text)
        q.set_defaults(run=run)
        q.add_argument("--csv", required=True, help=csv)
        q.add_argument("--json", action="store_true", help="print JSON")
        _model_arguments(q)


def run_sample(args: argparse.Namespace) -> int:
    from huskyai.mood.diary import DiaryError
    from huskyai.mood.sample import write_sample

    if args.days < 1:
        raise DiaryError(f"--days {args.days}: a diary needs at least one day")
    if not Path(args.out).resolve().parent.is_dir():
        raise DiaryError(f"{args.out}: the folder {Path(args.out).resolve().parent} does not exist")
    sample = write_sample(args.out, args.days, args.seed)
    gaps = sample.calendar_days - sample.days
    print(f"wrote {sample.csv}: {sample.days} days" + (f" ({gaps} of {sample.calendar_days} left out, as a real "
          f"diary has gaps)" if gaps else "") + f", SYNTHETIC; its true effects in {sample.truth}")
    return 0


def run_mood_train(args: argparse.Namespace) -> int:
    from huskyai.api import default_out
    from huskyai.mood.diary import DiaryError
    from huskyai.mood.export import installed_models, train_export

    if args.folds < 2:
        raise DiaryError(f"--folds {args.folds}: validation by time needs at least 2 folds")
    if args.models is None:
        models = installed_models()
    else:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    out = default_out("mood") if args.out is None else Path(args.out)
    card = train_export(args.csv, out, args.target, models, args.folds, args.seed, sign=not args.no_sign)
    if args.models is None and "fastai" not in models:
        print("note: fastai's candidate was left out: it needs the train extra (pip install 'huskyai[train]')",
              file=sys.stderr)
    print(summary(card))
    model = shlex.quote(str(out))
    print(f"exported to {out.resolve()}\nuse it:\n  huskyai mood predict --csv diary.csv --model {model}\n"
          f"  huskyai mood evaluate --csv new-days.csv --model {model}   (days it was not trained on)")
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
    if result["warning"]:
        print(f"warning: {result['warning']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    seen = result["seen_in_training"]["days"]
    print(f"{result['days']} days of {args.csv}" + (f", {seen} of them within the model's training days "
                                                    f"(in-sample)" if seen else ""))
    for name, m in result["metrics"].items():
        print(f"  {name:<13} MAE {m['mae']:.3f}  RMSE {m['rmse']:.3f}")
    if "unseen" in result:
        print(f"the {result['unseen']['days']} days outside the model's training days:")
        for name, m in result["unseen"]["metrics"].items():
            print(f"  {name:<13} MAE {m['mae']:.3f}  RMSE {m['rmse']:.3f}")
    return 0
