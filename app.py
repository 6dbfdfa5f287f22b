"""Hugging Face Spaces entry point: python app.py serves the shipped model on 127.0.0.1:7860.

Settings (HUSKYAI_MODEL, HUSKYAI_RATE_LIMIT, HUSKYAI_TRUST_PROXY, GRADIO_SERVER_PORT, ...) are read by
huskyai.settings (docs/settings.md lists them); the start-up, shared with ``huskyai serve``, is huskyai.serve.app.
"""

import sys

from huskyai.serve.app import serve

if __name__ == "__main__":
    sys.exit(serve())
