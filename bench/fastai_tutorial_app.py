"""The baseline: a fastai + Gradio tutorial app (learn.predict on every upload), on the same model."""

import os
from pathlib import Path

import gradio as gr
from fastai.vision.all import load_learner

learn = load_learner(Path(__file__).resolve().parent.parent / "export" / "learner.pkl")


def predict(img):
    _, _, probs = learn.predict(img)
    return dict(zip(learn.dls.vocab, map(float, probs)))


gr.Interface(predict, gr.Image(type="pil"), gr.Label(num_top_classes=2), flagging_mode="never").launch(
    server_name="127.0.0.1", server_port=int(os.environ["GRADIO_SERVER_PORT"]))
