"""The graph policy, tested as the attack: an ONNX graph whose tensor is "external data" naming a file makes
ONNX Runtime read that file from the working folder, even from bytes, and route it into the probabilities.
Every door (load, mood load, verify, sign) must refuse such a graph, and any graph with a non-standard operator."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import huskyai
from conftest import EXPORT, ROOT
from huskyai import mood
from huskyai.errors import GraphPolicyError, IntegrityError
from huskyai.trust import exports
from huskyai.trust.graphpolicy import check_graph

MOOD_EXPORT = ROOT / "export-mood"
SECRET = b"signing-key:6f1c2a9e0b7d4c3f8a5e"  # what the graph must never reach


# ---- graphs an attacker writes -------------------------------------------------------------------

def external(name: str, location: str, n: int) -> TensorProto:
    """A uint8 tensor of ``n`` bytes whose data is the start of the file ``location``."""
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[1, n])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(n))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def model(nodes, initializers=(), n: int = 2, inputs=None, **kwargs) -> bytes:
    """A model with the husky graph's signature (image in, probabilities [batch, n] out)."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, n])
    opsets = kwargs.pop("opsets", None) or [helper.make_opsetid("", 17)]
    graph = helper.make_graph(nodes, "leak", inputs or [image], [out], list(initializers), **kwargs)
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def leaking_graph(location: str, n: int = 2) -> bytes:
    """The attack: the file's first ``n`` bytes, cast to float, are the output probabilities."""
    return model([helper.make_node("Cast", ["leak"], ["probabilities"], to=TensorProto.FLOAT)],
                 [external("leak", location, n)], n)


def branch(name: str, location: str, n: int, as_constant: bool) -> onnx.GraphProto:
    """A subgraph returning the file's bytes, from an initializer of its own or a Constant node."""
    out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, n])
    cast = helper.make_node("Cast", ["leak"], [f"{name}_out"], to=TensorProto.FLOAT)
    if as_constant:
        constant = helper.make_node("Constant", [], ["leak"], value=external("c", location, n))
        return helper.make_graph([constant, cast], name, [], [out])
    return helper.make_graph([cast], name, [], [out], [external("leak", location, n)])


def nested_graph(location: str, n: int = 2) -> bytes:
    """The same leak inside an If: the initializer in one branch, a Constant's tensor in the other."""
    nodes = [helper.make_node("ReduceSum", ["image"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["positive"]),
             helper.make_node("If", ["positive"], ["probabilities"],
                              then_branch=branch("then", location, n, as_constant=False),
                              else_branch=branch("else", location, n, as_constant=True))]
    return model(nodes, [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])], n)


def run_bare(graph: bytes, n: int, pixel: float = 1.0) -> bytes:
    """What plain ONNX Runtime makes of the graph, loaded from bytes as serving does."""
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    image = np.full((1, 3, 8, 8), pixel, np.float32)
    return bytes(session.run(None, {"image": image})[0].astype(np.uint8).ravel())


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The server's working folder, holding a secret a graph can name by a relative path."""
    folder = tmp_path / "work"
    (folder / "config").mkdir(parents=True)
    (folder / "config" / "signing.key").write_bytes(SECRET)
    monkeypatch.chdir(folder)
    return folder


def with_graph(source: Path, folder: Path, name: str, graph: bytes) -> str:
    """A copy of an export with ``name`` replaced by ``graph`` and the card's hash fixed: a consistent
    third-party export. Returns the card's sha256, for pinning it."""
    shutil.copytree(source, folder)
    (folder / name).write_bytes(graph)
    card = json.loads((folder / "model.json").read_text())
    card["files"][name] = hashlib.sha256(graph).hexdigest()
    data = (json.dumps(card, indent=2) + "\n").encode()
    (folder / "model.json").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# ---- (a) the attack, through every door ----------------------------------------------------------

def test_bare_onnx_runtime_reads_a_file_named_by_the_graph(workdir):
    """The attack is real here: from bytes, ONNX Runtime reads the relative path from the working folder."""
    assert run_bare(leaking_graph("config/signing.key", 16), 16) == SECRET[:16]
    for pixel in (1.0, -1.0):  # the If's initializer, then its Constant node
        assert run_bare(nested_graph("config/signing.key", 16), 16, pixel) == SECRET[:16]


@pytest.mark.parametrize("location", ["config/signing.key", "../work/config/signing.key",
                                      "./config/../config/signing.key"])
def test_check_graph_refuses_external_data(location):
    with pytest.raises(GraphPolicyError, match=r"^model\.onnx: tensor 'leak' keeps its data outside the graph "
                                               r".*graph policy: every tensor's data is embedded"):
        check_graph(leaking_graph(location), "model.onnx")


def test_a_pinned_export_whose_graph_reads_a_file_is_refused_by_load_verify_and_sign(workdir, tmp_path,
                                                                                     monkeypatch, cli):
    folder = tmp_path / "third-party"
    digest = with_graph(EXPORT, folder, "model.onnx", leaking_graph("config/signing.key"))
    monkeypatch.setenv(exports.MODEL_SHA256_ENV, digest)  # the operator pinned it: trust is not the question
    with pytest.raises(GraphPolicyError, match="model.onnx: tensor 'leak' keeps its data outside the graph"):
        huskyai.load(folder, engine="onnx")
    report = huskyai.verify(folder)
    assert not report.ok and any("graph policy: every tensor's data is embedded" in p for p in report.problems)
    with pytest.raises(IntegrityError, match="graph policy"):
        huskyai.sign(folder)
    assert "signature" not in json.loads((folder / "model.json").read_text())
    sign = cli("sign", folder, cwd=workdir)
    assert sign.returncode == 1 and "Traceback" not in sign.stderr
    assert "graph policy: every tensor's data is embedded" in sign.stderr


# ---- (b) anywhere in the model -------------------------------------------------------------------

def test_external_data_in_a_nested_if_is_refused(workdir, tmp_path, monkeypatch):
    graph = nested_graph("config/signing.key")
    with pytest.raises(GraphPolicyError, match="tensor 'leak' keeps its data outside"):
        check_graph(graph, "model.onnx")
    folder = tmp_path / "nested"
    monkeypatch.setenv(exports.MODEL_SHA256_ENV, with_graph(EXPORT, folder, "model.onnx", graph))
    with pytest.raises(GraphPolicyError, match="graph policy"):
        huskyai.load(folder)


def _placements() -> dict[str, bytes]:
    """Every other place a tensor can sit in a model."""
    leak = external("leak", "config/signing.key", 2)
    cast = helper.make_node("Cast", ["leak"], ["probabilities"], to=TensorProto.FLOAT)
    sparse = helper.make_sparse_tensor(external("leak", "config/signing.key", 2),
                                       helper.make_tensor("idx", TensorProto.INT64, [2], [0, 1]), [1, 2])
    body = helper.make_graph([helper.make_node("Constant", [], ["leak"], value=leak),
                              helper.make_node("Identity", ["cond"], ["cond_out"]),
                              helper.make_node("Cast", ["leak"], ["step"], to=TensorProto.FLOAT)], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("step", TensorProto.FLOAT, [1, 2])])
    loop = helper.make_node("Loop", ["", "true"], ["probabilities"], body=body)
    listed = helper.make_node("Identity", ["x"], ["probabilities"])
    listed.attribute.append(helper.make_attribute("branches", [branch("b", "config/signing.key", 2, True)]))
    function = helper.make_function("", "Leak", [], ["y"], [helper.make_node("Constant", [], ["y"], value=leak)],
                                     [helper.make_opsetid("", 17)])
    constant_sparse = helper.make_node("Constant", [], ["probabilities"], sparse_value=sparse)
    graphs = {
        "a sparse initializer": model([cast], sparse_initializer=[sparse]),
        "a Constant node's tensor": model([helper.make_node("Constant", [], ["leak"], value=leak), cast]),
        "a Constant node's sparse tensor": model([constant_sparse]),
        "a tensor list attribute": model([helper.make_node("Identity", ["image"], ["probabilities"],
                                                           leaks=[leak, leak])]),
        "a Loop body": model([loop], [helper.make_tensor("true", TensorProto.BOOL, [], [True])]),
        "a list of graphs": model([listed]),
    }
    with_function = onnx.load_from_string(model([helper.make_node("Identity", ["image"], ["probabilities"])]))
    with_function.functions.append(function)
    graphs["a model function"] = with_function.SerializeToString()
    training = onnx.load_from_string(model([helper.make_node("Identity", ["image"], ["probabilities"])]))
    training.training_info.add().initialization.CopyFrom(helper.make_graph([], "init", [], [], [leak]))
    graphs["a training graph"] = training.SerializeToString()
    marked = onnx.load_from_string(model([helper.make_node("Identity", ["image"], ["probabilities"])]))
    marked.graph.initializer.add().CopyFrom(TensorProto(name="leak", data_type=TensorProto.UINT8, dims=[1],
                                                        data_location=TensorProto.EXTERNAL))
    graphs["data_location EXTERNAL without entries"] = marked.SerializeToString()
    return graphs


@pytest.mark.parametrize("place", list(_placements()))
def test_external_data_is_refused_wherever_the_tensor_sits(place):
    with pytest.raises(GraphPolicyError, match="keeps its data outside the graph.*every tensor's data is embedded"):
        check_graph(_placements()[place], "g.onnx")


# ---- (c) operators from outside the standard domains ---------------------------------------------

@pytest.mark.parametrize("domain", ["com.evil", "com.microsoft", "org.pytorch.aten", "ai.onnx.preview.training"])
def test_a_node_in_a_non_standard_domain_is_refused(domain):
    node = helper.make_node("Reader", ["image"], ["probabilities"], domain=domain, name="reader")
    graph = model([node], opsets=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    with pytest.raises(GraphPolicyError, match=rf"node 'reader' \(Reader\) is in domain '{domain}'.*"
                                               r"graph policy: only the standard ONNX operator domains"):
        check_graph(graph, "g.onnx")


def test_a_custom_node_inside_a_subgraph_or_a_function_is_refused():
    inner = helper.make_graph([helper.make_node("Reader", [], ["o"], domain="com.evil", name="deep")], "inner",
                              [], [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, 2])])
    nested = model([helper.make_node("If", ["c"], ["probabilities"], then_branch=inner, else_branch=inner)])
    with pytest.raises(GraphPolicyError, match="node 'deep'"):
        check_graph(nested, "g.onnx")
    proto = onnx.load_from_string(model([helper.make_node("Leak", ["image"], ["probabilities"], domain="local")]))
    proto.functions.append(helper.make_function("local", "Leak", ["x"], ["y"],
                                                [helper.make_node("Identity", ["x"], ["y"])],
                                                [helper.make_opsetid("", 17)]))
    with pytest.raises(GraphPolicyError, match="domain 'local'"):
        check_graph(proto.SerializeToString(), "g.onnx")


def test_a_declared_but_unused_domain_is_allowed():
    """ONNX Runtime's optimiser declares every domain it knows in the graphs it saves (our INT8 graphs):
    declaring runs nothing, so only operators and functions are held to the standard domains."""
    declared = [helper.make_opsetid(d, 1) for d in ("com.microsoft", "org.pytorch.aten", "com.microsoft.nchwc")]
    check_graph(model([helper.make_node("Identity", ["image"], ["probabilities"])],
                      opsets=[helper.make_opsetid("", 17), *declared]), "g.onnx")


def test_a_graph_that_does_not_parse_or_hides_unknown_fields_is_refused():
    good = model([helper.make_node("Identity", ["image"], ["probabilities"])])
    check_graph(good, "g.onnx")
    for bad, rule in [(b"\xff" * 64, "does not parse"), (b"", "holds no graph"), (good[:-3], "does not parse"),
                      (good + b"\xb8\x3e\x01", "fields this ONNX version does not know"),
                      (b"\x00\x00\x00\x00ORTM" + good, "ONNX Runtime's own model format")]:
        with pytest.raises(GraphPolicyError, match=rule):
            check_graph(bad, "g.onnx")
    assert issubclass(GraphPolicyError, IntegrityError)


# ---- (d) what we ship keeps to it ------------------------------------------------------------------

def test_the_shipped_husky_and_mood_graphs_pass():
    check_graph((EXPORT / "model.onnx").read_bytes(), "export/model.onnx")
    check_graph((MOOD_EXPORT / "mood.onnx").read_bytes(), "export-mood/mood.onnx")
    assert huskyai.verify().ok and huskyai.verify(MOOD_EXPORT).ok


# ---- (e) the mood model's door ---------------------------------------------------------------------

def test_a_pinned_mood_export_whose_graph_reads_a_file_is_refused(workdir, tmp_path, monkeypatch):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    graph = model([helper.make_node("Cast", ["leak"], ["probabilities"], to=TensorProto.FLOAT)],
                  [external("leak", "config/signing.key", 2)], inputs=[x])
    folder = tmp_path / "mood"
    monkeypatch.setenv(exports.MOOD_MODEL_SHA256_ENV, with_graph(MOOD_EXPORT, folder, "mood.onnx", graph))
    with pytest.raises(GraphPolicyError, match="mood.onnx: tensor 'leak' keeps its data outside the graph"):
        mood.load(folder)


# ---- (f) one pin per model -------------------------------------------------------------------------

def test_pinning_the_husky_model_leaves_the_shipped_mood_model_serving(tmp_path, monkeypatch):
    own = tmp_path / "own"
    shutil.copytree(EXPORT, own)
    card = json.loads((own / "model.json").read_text()) | {"name": "my own husky model"}
    (own / "model.json").write_text(json.dumps(card))
    monkeypatch.setenv(exports.MODEL_SHA256_ENV, exports.sha256((own / "model.json").read_bytes()))
    assert "operator" in huskyai.load(own).trust
    assert "pinned in the huskyai package" in mood.load().trust  # the husky pin is not the mood model's
    mood_card = json.loads((MOOD_EXPORT / "model.json").read_text())  # a folder checked by its card's kind
    assert exports.open_export(MOOD_EXPORT, pin_env=exports.pin_env_for(mood_card)).card["kind"] == "mood"
    with pytest.raises(IntegrityError, match=r"is not the pinned .*\$HUSKYAI_MODEL_SHA256"):
        huskyai.load()  # ... and still refuses any other husky model
    monkeypatch.setenv(exports.MOOD_MODEL_SHA256_ENV, "ab" * 32)
    with pytest.raises(IntegrityError, match=r"is not the pinned .*\$HUSKYAI_MOOD_MODEL_SHA256"):
        mood.load()
