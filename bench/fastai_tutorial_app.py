"""The baseline: a fastai + Gradio tutorial app (learn.predict on every upload), on the same model."""

import os

import gradio as gr
from fastai.vision.all import load_learner

# a pickle that bench/startup.py exported from the shipped model, as a tutorial's user would have one
learn = load_learner(os.environ["HUSKYAI_BENCH_PICKLE"])


def predict(img):
    _, _, probs = learn.predict(img)
    return dict(zip(learn.dls.vocab, map(float, probs)))


gr.Interface(predict, gr.Image(type="pil"), gr.Label(num_top_classes=2), flagging_mode="never").launch(
    server_name="127.0.0.1", server_port=int(os.environ["GRADIO_SERVER_PORT"]))
