"""Train Husky AI on a photo folder and export it: python train.py --data DIR [--out export]."""

import argparse
import sys

from huskyai.cli import add_train_arguments, run_train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_arguments(parser)
    sys.exit(run_train(parser.parse_args()))
