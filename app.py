"""Hugging Face Spaces entry point: python app.py serves the shipped model on 127.0.0.1:7860.

HUSKYAI_MODEL=DIR serves another export folder; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT move it.
"""

import os
import sys

from huskyai import IntegrityError
from huskyai.engine import EngineError
from huskyai.predictor import load_in_background

if __name__ == "__main__":
    # gradio wraps every call in a matplotlib backend switch; naming the backend up front saves the
    # first request 0.3 s of backend resolution (where matplotlib is installed; a server has no display)
    os.environ.setdefault("MPLBACKEND", "Agg")
    # the model loads in a thread while gradio (several seconds of imports) is imported below
    model = load_in_background(os.environ.get("HUSKYAI_MODEL") or None)
    from huskyai.ui import launch

    try:
        predictor = model.result()
    except (IntegrityError, EngineError) as err:  # a clear line, not a traceback
        sys.exit(f"error: cannot serve the model: {err}")
    launch(model=predictor)
