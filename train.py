"""Train Husky AI on a photo folder and export it: python train.py --data DIR [--out FOLDER]
(default: a new runs/husky-<date>-<time>; the shipped export/ is never written unless --replace-shipped).
The mood model: python train.py mood --csv diary.csv [--out FOLDER] (default: a new runs/mood-<date>-<time>).

The same as `huskyai train` / `huskyai mood train` (python -m huskyai ...), which are huskyai.train() and
huskyai.mood's training in Python."""

import argparse
import sys

from huskyai.cli.main import add_train_arguments, execute, main, run_train

if __name__ == "__main__":
    if sys.argv[1:2] == ["mood"]:
        sys.exit(main(["mood", "train", *sys.argv[2:]]))
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_arguments(parser)
    parser.set_defaults(run=run_train)
    sys.exit(execute(parser.parse_args()))
