"""``huskyai score``: many photos into one results file (parquet or csv), resumable, on every core or on Ray.

The command parses, calls huskyai.api.score and prints its summary; what a row holds and how resuming
decides is huskyai.evaluation.score's."""

from __future__ import annotations

import argparse
import sys

from huskyai.cli.common import add_model_arguments, command, model_options


def add_score(sub) -> None:
    p = command(sub, "score", "score many photos into a results file (*.csv, or *.parquet with the score extra), "
                "one row per photo, resumable (every core, or --ray)", run_score)
    add_score_arguments(p)
    add_model_arguments(p)


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``huskyai score`` besides the model's (--model, --sha256, --public-key,
    --trust-unsigned)."""
    p.add_argument("source", nargs="+", help="photo files, folders (image files in them, recursively), globs "
                                             "('photos/**/*.jpg') or text files with one photo path a line; "
                                             "symbolic links inside them are not followed")
    p.add_argument("--out", required=True, help="results file: *.csv (needs nothing more) or *.parquet (pip install "
                                                "'huskyai[score]'); one row per photo: path, sha256, label, "
                                                "positive_probability (P(husky), whatever the label), error, "
                                                "model_sha256. Photos whose row in it is still valid are skipped")
    p.add_argument("--workers", type=int, help="processes (default: one per core; 0: this process only), "
                                               "or Ray actors with --ray (default: one per CPU of the cluster)")
    p.add_argument("--ray", action="store_true", help="score on Ray Data (a local Ray unless --ray-address; "
                                                      "pip install 'huskyai[ray]')")
    p.add_argument("--ray-address", help="the Ray cluster to score on (e.g. ray://head:10001); implies --ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_score(args: argparse.Namespace) -> int:
    """0 when every photo has a row (refused ones carry their error), 1 on a user error (printed by
    huskyai.cli.main), 130 when interrupted (what was scored is kept)."""
    from huskyai.api import load, score

    model = args.model
    if args.public_key:  # score loads a folder as huskyai.load does, without a public key: load it here
        model = load(args.model, engine="onnx", **model_options(args))
    try:
        s = score(args.source, args.out, model, workers=args.workers, use_ray=args.ray,
                  ray_address=args.ray_address, sha256=args.sha256, trust_unsigned=args.trust_unsigned,
                  progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: the photos scored so far are in {args.out}; the same command resumes", file=sys.stderr)
        return 130
    print(f"{s.out}: {s.scored} photos scored ({s.refused} refused, with their error), {s.skipped} already there; "
          f"{s.photos_per_second:.1f} photos/s")
    return 0
