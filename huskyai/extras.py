"""Optional parts of Husky AI and the pip extra that brings each.

Serving needs only gradio, onnxruntime, numpy and pillow. Training, the red-team kit, explanations and
cluster scoring need more; asking for them without it gives one line naming the extra to install,
never a raw ModuleNotFoundError from deep inside.
"""

from __future__ import annotations

import importlib.util

from huskyai.errors import MissingExtraError

# extra -> the modules it brings that the code imports (the pip names are in pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "timm", "safetensors", "onnx", "fastai", "sklearn", "matplotlib"),
    "redteam": ("torch", "timm", "safetensors", "sklearn", "matplotlib", "skimage", "art"),
    "mood": ("sklearn", "skl2onnx", "matplotlib"),
    "explain": ("torch", "timm", "safetensors", "matplotlib", "pytorch_grad_cam"),
    "score": ("pyarrow",),
    "ray": ("ray", "pyarrow"),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed (cheap: nothing is imported)."""
    return [m for m in EXTRAS[extra] if not _installed(m)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a broken or blocked installation counts as missing
        return False


def require(extra: str, what: str) -> None:
    """Raise MissingExtraError, in one line, if ``what`` cannot run because ``extra`` is not installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{what} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not installed: "
            f"pip install 'huskyai[{extra}]' (in a clone: pip install -r requirements-dev.txt)")
