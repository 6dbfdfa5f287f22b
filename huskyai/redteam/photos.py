"""Photos for the round-2 attacks: image files under folders (labels ignored or read from the folder
name), which of them the model card says were held out of training, and the victim's input for each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from huskyai.inference.predictor import Predictor

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def image_files(folders: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(key, path) of every image under ``folders``, sorted; the key is "folder/label/file", as the card
    names held-out photos when it was trained on several folders."""
    found = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder of photos")
        found += [(f"{folder.resolve().name}/{p.relative_to(folder).as_posix()}", p)
                  for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()]
    return sorted(found)


def held_out(model: Predictor, keys: Sequence[str]) -> list[bool]:
    """Whether the card lists each photo as held out of training (by "folder/label/file", or "label/file"
    for a model trained on one folder)."""
    listed = set(model.card.get("training", {}).get("holdout_files", []))
    return [key in listed or key.split("/", 1)[1] in listed for key in keys]


def label_of(key: str) -> str:
    """The label folder a photo sits in (for attacks that know the truth: membership, poisoning)."""
    return key.split("/")[-2]


def victim_inputs(model: Predictor, paths: Sequence[Path]) -> list[np.ndarray]:
    """Each photo as the victim's input: the card's public crop and resize, HxWx3 uint8 (uploading it
    gives the same answer as the photo)."""
    from huskyai.images.decode import load_image

    return [np.asarray(model.preprocessing.crop_resize(load_image(p))) for p in paths]
