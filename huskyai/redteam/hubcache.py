"""A Hugging Face Hub repository without the Hub: files put into a cache exactly as huggingface_hub lays out a
download, and that cache used offline, so that ``huskyai.load("hf://...")`` runs the library's own code path.

The layout (huggingface_hub's ``file_download``): ``models--OWNER--NAME/blobs/<etag>`` holds each file's bytes,
``snapshots/<commit>/<file>`` is a relative symlink ``../../blobs/<etag>``, and ``refs/<branch>`` holds the
commit hash. An LFS file's etag is its sha256, which is what is used here for every file.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path


def repo_path(cache: Path, repo_id: str) -> Path:
    """The cache folder of a model repository: models--OWNER--NAME."""
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def fill_cache(cache: Path, repo_id: str, files: Mapping[str, bytes], commit: str | None = None,
               ref: str | None = "main") -> Path:
    """``files`` as the commit ``commit`` (default: a hash of their digests) of ``repo_id`` in the cache
    ``cache``, with ``refs/<ref>`` naming it; the snapshot folder."""
    repo = repo_path(cache, repo_id)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    commit = commit or hashlib.sha1("".join(sorted(digests.values())).encode()).hexdigest()
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / digests[name]
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        link.unlink(missing_ok=True)
        link.symlink_to(f"../../blobs/{digests[name]}")
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def export_files(folder: Path, names: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """The files of an export folder, as a repository would hold them (``names``: only those)."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())
            if p.is_file() and (names is None or p.name in names)}


@contextlib.contextmanager
def offline_cache(cache: Path) -> Iterator[Path]:
    """huggingface_hub in this process working offline on ``cache``, as HF_HUB_OFFLINE=1 and HF_HUB_CACHE=cache
    would make it had they been set before it was imported (it reads them then)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE
    constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE = True, str(cache)
    try:
        yield Path(cache)
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE = saved
