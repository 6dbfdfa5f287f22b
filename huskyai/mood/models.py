"""The candidate models, all on the same standardised matrix, and their export to ONNX.

Each ``fit_NAME(X, y, y_range, seed)`` returns a fitted model with ``predict(X) -> 1-D array``;
``to_onnx(name, model, n_features)`` returns the ONNX bytes (input "x": float32 [N, D], output: mood).
scikit-learn, skl2onnx, torch and fastai are imported only here, inside the functions: serving
needs none of them.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

MODELS = ("ridge", "hgb", "fastai")
FAST_MODELS = ("ridge", "hgb")  # seconds on a year of days; fastai adds its import and an epoch loop
INPUT_NAME = "x"


def fit_ridge(X: np.ndarray, y: np.ndarray, y_range: tuple[float, float], seed: int):
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=np.logspace(-1, 3, 9)).fit(X, y)  # alpha by efficient leave-one-out on training days


def fit_hgb(X: np.ndarray, y: np.ndarray, y_range: tuple[float, float], seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    model = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=8, min_samples_leaf=10,
                                          l2_regularization=1.0, random_state=seed)
    with threadpool_limits(1):  # a few hundred rows: OpenMP threads only wait on each other (minutes on a busy box)
        return model.fit(X, y)


class FastaiModel:
    """fastai's TabularPandas + tabular_learner (regression with y_range) on the already-standardised
    columns (all continuous, no procs: the one preprocessing is ours and lives in the card)."""

    def __init__(self, learn):
        self.learn = learn
        self.net = _ContOnly(learn.model).eval()

    def predict(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net(torch.from_numpy(np.asarray(X, np.float32))).numpy().reshape(-1)


def _ContOnly(model):
    """The TabularModel behind one input (the continuous columns), as ONNX wants it."""
    import torch

    class ContOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.new_zeros((x.shape[0], 0), dtype=torch.long), x).reshape(-1)

    return ContOnly(model)


def fit_fastai(X: np.ndarray, y: np.ndarray, y_range: tuple[float, float], seed: int) -> FastaiModel:
    import pandas as pd
    from fastai.tabular.all import RegressionBlock, TabularPandas, set_seed, tabular_learner

    set_seed(seed, reproducible=True)
    names = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names).assign(y=y.astype(np.float32))
    cut = max(1, int(len(frame) * 0.85))  # the learner's own early look; the real validation is outside
    tab = TabularPandas(frame, procs=[], cont_names=names, y_names="y", y_block=RegressionBlock(),
                        splits=(list(range(cut)), list(range(cut, len(frame)))))
    dls = tab.dataloaders(bs=32, num_workers=0)
    learn = tabular_learner(dls, layers=[64, 32], y_range=(y_range[0] - 0.5, y_range[1] + 0.5),
                            config=dict(ps=[0.2, 0.1], embed_p=0.0), wd=0.1)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(25, 3e-3)
    return FastaiModel(learn)


FITTERS = {"ridge": fit_ridge, "hgb": fit_hgb, "fastai": fit_fastai}


def to_onnx(name: str, model, n_features: int) -> bytes:
    """The fitted model as an ONNX graph: skl2onnx for scikit-learn's, torch.onnx for fastai's."""
    if name == "fastai":
        import torch

        buffer = io.BytesIO()
        torch.onnx.export(model.net, (torch.zeros(1, n_features),), buffer, input_names=[INPUT_NAME],
                          output_names=["mood"], dynamic_axes={INPUT_NAME: {0: "n"}, "mood": {0: "n"}},
                          dynamo=False)
        return buffer.getvalue()
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    with _bools_as_ints():
        graph = skl_to_onnx(model, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                            target_opset={"": 17, "ai.onnx.ml": 3})
    return graph.SerializeToString()


@contextlib.contextmanager
def _bools_as_ints():
    """skl2onnx 1.20 gives the tree converter's missing-value flags as Python bools, which onnx 1.23
    refuses in an integer-list attribute; they mean 0/1, so pass them as such while converting."""
    import onnx.helper
    from skl2onnx.common import _container

    original = onnx.helper.make_attribute

    def make_attribute(key, value, *args, **kwargs):
        if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value):
            value = [int(v) if isinstance(v, (bool, np.bool_)) else v for v in value]
        return original(key, value, *args, **kwargs)

    _container.make_attribute = onnx.helper.make_attribute = make_attribute
    try:
        yield
    finally:
        onnx.helper.make_attribute = original
        _container.make_attribute = original
