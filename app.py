"""Hugging Face Spaces entry point: python app.py serves the shipped model on 127.0.0.1:7860.

HUSKYAI_MODEL=DIR serves another export folder; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT move it.
"""

from huskyai.ui import launch

if __name__ == "__main__":
    launch()
