"""Shared fixtures: photos that may ship (scikit-image's), generated bad files, one tiny trained model, and the
command line run in this process (``cli``) or several commands in one fresh process (:func:`commands_in_a_process`)."""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED_HUSKIES = ROOT.parent / "shared" / "data" / "huskies"
EXPORT = ROOT / "export"
# this run's own folder for state: audit lines, and a signing key that training makes on first use
# (never the user's own key); removed when the run ends
RUN_DIR = Path(tempfile.mkdtemp(prefix="huskyai-test-"))
atexit.register(shutil.rmtree, RUN_DIR, ignore_errors=True)
AUDIT_LOG = RUN_DIR / "audit.jsonl"
os.environ["HUSKYAI_AUDIT_LOG"] = str(AUDIT_LOG)
os.environ["XDG_CONFIG_HOME"] = str(RUN_DIR / "config")
os.environ.pop("HUSKYAI_SIGNING_KEY", None)
os.environ.pop("HUSKYAI_MODEL_SHA256", None)


def skimage_photo(name: str) -> Image.Image:
    from skimage import data

    arr = getattr(data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    return Image.fromarray(arr[..., :3].astype(np.uint8))


def jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()


def png_bomb_bytes(width: int = 20000, height: int = 20000) -> bytes:
    """A small, valid-looking PNG whose header claims ``width`` x ``height`` pixels."""
    raw = zlib.compress(b"\x00" * (1 + width) * 4, 9)  # a few rows; the header is what matters
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def bad_files() -> dict[str, bytes]:
    """Files every part of Husky AI must refuse with a clear message."""
    good = jpeg_bytes(skimage_photo("astronaut"))
    return {
        "text.jpg": b"this is not a photo, just text with a .jpg name\n",
        "truncated.jpg": good[: len(good) // 3],
        "empty.jpg": b"",
        "tiny.png": _png(Image.new("RGB", (1, 1), "white")),
        "bomb.png": png_bomb_bytes(),
    }


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


TOY_CLASSES = {"husky": ("chelsea",), "not_husky": ("coffee",)}


def make_toy_dataset(root: Path, n_per_class: int = 12, size: int = 96, seed: int = 0,
                     classes: dict[str, tuple[str, ...]] = TOY_CLASSES) -> Path:
    """Two classes anyone can tell apart: crops of skimage's cat ('husky') and of its coffee cup
    (another ``seed``, other crops: photos a model trained on the first set never saw). ``classes``
    maps each label to the skimage photos its crops cycle through."""
    rng = np.random.default_rng(seed)
    for label, names in classes.items():
        sources = [skimage_photo(name) for name in names]
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            src = sources[i % len(sources)]
            w, h = src.size
            s = int(min(w, h) * rng.uniform(0.6, 1.0))
            x, y = rng.integers(0, w - s + 1), rng.integers(0, h - s + 1)
            img = src.crop((x, y, x + s, y + s)).resize((size, size))
            if i % 2:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            img.save(root / label / f"{label}_{i:02d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def toy_export(tmp_path_factory, toy_data) -> Path:
    """A real fastai training run on the toy set (about 20 s): head fit plus one fine-tuning epoch."""
    from huskyai.training.run import train

    out = tmp_path_factory.mktemp("toy_export")
    train(toy_data, out, epochs=1, size=96, valid_pct=0.25, cv=1, report=lambda msg: None)
    return out


@pytest.fixture(scope="session")
def shipped():
    import huskyai

    return huskyai.load()


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not up after {timeout} s")


# --- the command line -----------------------------------------------------------------------------------
# A fresh interpreter costs a second or more per command (Python, numpy, ONNX Runtime, the model), so commands run
# in this process through the console script's own function; a test whose point is the process itself (the entry
# point, what a process imported, a serving install without torch) runs them in a process of their own.

@dataclass
class Ran:
    """What a command did, as subprocess.CompletedProcess has it."""

    returncode: int
    stdout: str
    stderr: str


def exit_code(exit: SystemExit) -> int:
    """The process exit code ``sys.exit(code)`` gives (argparse's usage errors, --help)."""
    return exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1


@contextlib.contextmanager
def fresh_warnings():
    """Warnings as a fresh interpreter shows them: Python's default filters (not pytest's), printed to stderr, each
    once per place again."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        yield


@pytest.fixture
def cli(capfd, monkeypatch):
    """``cli("predict", "x.jpg", env={...}, cwd=folder)``: ``huskyai ARGS`` run in this process by
    huskyai.cli.main.main, as the console script runs it; returns its exit code and what it printed (file
    descriptors, so native libraries' lines count too). ``env`` is set on top of this process's environment."""
    from huskyai.cli.main import main

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None) -> Ran:
        capfd.readouterr()  # what came before is not this command's
        with monkeypatch.context() as patch, fresh_warnings():
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            if cwd is not None:
                patch.chdir(cwd)
            try:
                code = main([str(a) for a in args])
            except SystemExit as exit:
                code = exit_code(exit)
        out = capfd.readouterr()
        return Ran(code, out.out, out.err)

    return run


def huskyai_process(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Ran:
    """``python -m huskyai ARGS`` in a process of its own (``env``: its whole environment; default this one's)."""
    proc = subprocess.run([sys.executable, "-m", "huskyai", *map(str, args)], capture_output=True, text=True,
                          env=env or python_env(), cwd=cwd, timeout=600)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


# One fresh process runs each command as the console script would (its exit code, what it printed, a traceback
# for an uncaught error), with the output file descriptors of each command its own and its warnings shown afresh.
COMMANDS_IN_ONE_PROCESS = """
import contextlib, json, os, sys, tempfile, traceback, warnings

def run(argv, cwd):
    os.chdir(cwd)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush(); sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
        try:
            with warnings.catch_warnings():  # each command's warnings are shown again, as in a process of its own
                try:
                    from huskyai.cli.main import main
                    code = main(argv)
                except SystemExit as exit:
                    code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
                except Exception:
                    traceback.print_exc()
                    code = 1
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
            os.close(saved[0]); os.close(saved[1])
        out.seek(0); err.seek(0)
        return [code, out.read().decode(), err.read().decode()]

commands = json.load(sys.stdin)
results = [run(argv, cwd) for argv, cwd in commands]
print(json.dumps(results))
"""


def commands_in_a_process(commands: list[tuple[list[str], Path]], env: dict[str, str]) -> list[Ran]:
    """Run each ``(argv, cwd)`` as ``huskyai ARGV`` in ONE fresh process with environment ``env`` (a serving
    install's, one without torch): what a process without a package does, paid for once for many commands."""
    order = json.dumps([[[str(a) for a in argv], str(cwd)] for argv, cwd in commands])
    proc = subprocess.run([sys.executable, "-c", COMMANDS_IN_ONE_PROCESS], input=order, capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [Ran(*result) for result in json.loads(proc.stdout.splitlines()[-1])]


@contextlib.contextmanager
def running_app(workdir: Path, **env: str):
    """``python app.py`` exactly as a user runs it, on a free loopback port, with its own cache and log."""
    port = free_port()
    cache = workdir / "gradio_cache"
    audit_log = workdir / "audit.jsonl"
    full_env = python_env() | {"GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(cache),
                               "GRADIO_ANALYTICS_ENABLED": "False", "HUSKYAI_AUDIT_LOG": str(audit_log)} | env
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, proc)
        yield {"url": url, "cache": cache, "proc": proc, "audit_log": audit_log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- a serving install: the extras unimportable (tests/test_packaging.py, the browser and command tests) ---
# What a serving install (requirements.txt, or `pip install huskyai`) lacks: every module of every extra that the
# core dependencies do not bring, read from pyproject.toml and huskyai.extras, plus the training stack by name.
def _absent_on_a_serving_install() -> list[str]:
    import re

    import tomllib

    from huskyai.extras import EXTRAS

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[^A-Za-z0-9_.-]", d, maxsplit=1)[0].lower().replace("-", "_") for d in project["dependencies"]}
    named = {"torch", "torchvision", "fastai", "timm", "safetensors", "sklearn", "matplotlib", "skl2onnx",
             "pytorch_grad_cam", "cleanlab", "art", "skimage", "pyarrow", "ray"}
    return sorted(({m for modules in EXTRAS.values() for m in modules} | named) - core)


TRAINING_ONLY = tuple(_absent_on_a_serving_install())

BLOCKER = f'''
import sys

class RefuseTrainingPackages:
    """Make the extras unimportable, as on a machine that installed only requirements.txt."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (a serving install has none)", name=name)
        return None

sys.meta_path.insert(0, RefuseTrainingPackages())
'''


def serving_only_environment(folder: Path) -> dict[str, str]:
    """An environment whose python cannot import torch, fastai, timm, ...: a sitecustomize written to
    ``folder`` refuses them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(BLOCKER)
    return python_env() | {"PYTHONPATH": f"{folder}{os.pathsep}{ROOT}"}
