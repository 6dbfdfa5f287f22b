"""Shared helpers of the sharing tests: key pairs, small and real exports, and a Hugging Face cache used offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import EXPORT
from huskyai.redteam.hubcache import export_files, fill_cache
from huskyai.redteam.tamper import new_key_pair
from huskyai.trust import exports, writer

__all__ = ["new_key_pair", "tiny_export", "shipped_copy", "own_copy", "offline_hub", "export_files", "fill_cache"]


def tiny_export(folder: Path, name: str = "tiny") -> Path:
    """An export with no network in it, for the trust rules alone: a card, a red-team summary and a plot."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / exports.REDTEAM_NAME).write_text(json.dumps({"all_refused": True}))
    (folder / "confusion_matrix.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    writer.write_card(folder, {"name": name, "kind": "test"})
    return folder


def shipped_copy(tmp_path: Path, name: str = "export") -> Path:
    """A copy of the shipped export (still pinned by the package: its card is unchanged)."""
    copy = tmp_path / name
    shutil.copytree(EXPORT, copy)
    return copy


def own_copy(tmp_path: Path, name: str = "export") -> Path:
    """A copy of the shipped export with a card of its own: nothing vouches for it until it is signed or pinned."""
    copy = shipped_copy(tmp_path, name)
    card = json.loads((copy / exports.CARD_NAME).read_text())
    writer.write_card(copy, card | {"name": "Husky AI, a team's copy"})
    return copy


def offline_hub(monkeypatch: pytest.MonkeyPatch, cache: Path) -> Path:
    """huggingface_hub offline on ``cache``: HF_HUB_OFFLINE=1, HF_HUB_CACHE and HF_HOME for child processes, and
    the library's copies of them in this process (it reads them when it is imported)."""
    from huggingface_hub import constants

    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(cache.parent / "hf_home"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache
