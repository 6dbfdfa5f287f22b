"""The red-team kit: attacks on Husky AI, each usable from Python and from `python -m huskyai attack`."""
