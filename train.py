"""Train Husky AI on a photo folder and export it: python train.py --data DIR [--out export].

The same as `huskyai train` (python -m huskyai train), which is huskyai.train() in Python."""

import argparse
import sys

from huskyai.cli import add_train_arguments, execute, run_train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_arguments(parser)
    parser.set_defaults(run=run_train)
    sys.exit(execute(parser.parse_args()))
