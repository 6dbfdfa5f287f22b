"""Shared by the certified-answer tests: one tiny noise-trained export per test run, and photos to certify.

The export is a real ``huskyai.train(..., noise_sigma=0.25)`` run on the toy set at 64 px (about 25 s), made
once per run whichever test module asks first (each module's fixture calls :func:`noise_trained_export`).
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import jpeg_bytes, skimage_photo

os.environ.pop("HUSKYAI_ROBUST_MODEL_SHA256", None)  # a pin from the shell would refuse the run's own export

SIGMA = 0.25
SIZE = 64
_made: dict[str, Path] = {}


def noise_trained_export(tmp_path_factory, toy_data: Path) -> Path:
    """The run's noise-trained export (signed with the run's key, so it loads trusted), trained on first use."""
    if "export" not in _made:
        from huskyai.training.run import train

        out = tmp_path_factory.mktemp("robust_export")
        train(toy_data, out, epochs=1, size=SIZE, valid_pct=0.25, cv=1, noise_sigma=SIGMA, report=lambda msg: None)
        _made["export"] = out
    return _made["export"]


def photo(name: str = "coffee") -> bytes:
    """A scikit-image photo as JPEG bytes."""
    return jpeg_bytes(skimage_photo(name))
