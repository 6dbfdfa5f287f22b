"""The graph policy: what an ONNX graph may hold before ONNX Runtime is given it.

A graph that hashes right is still the work of whoever exported it, and ONNX lets a graph reach outside
its own bytes: a tensor stored as "external data" names a file, which ONNX Runtime reads relative to the
working folder even when the graph comes from memory, and the graph can route those bytes into its
outputs. An operator from a non-standard domain runs code that no ONNX specification describes. So every
graph an export lists is checked here, from the verified bytes, before any session is built from it:

1. it parses as an ONNX ModelProto with a graph, and is not ONNX Runtime's own (flatbuffer) model format,
   which ONNX Runtime would otherwise detect and load without protobuf;
2. it holds no field this ONNX version does not know (a newer runtime might act on it unseen);
3. every tensor's data is embedded: no ``data_location == EXTERNAL`` and no ``external_data`` entry in any
   tensor anywhere (initializers and sparse initializers of the main graph, of every subgraph of If, Loop
   and Scan, of training graphs, Constant values and any other tensor attribute, in model functions too);
4. every operator comes from a standard domain (``STANDARD_DOMAINS``), in every graph and function, and
   every model function is defined in one.

Declaring a domain in ``opset_import`` runs nothing, and ONNX Runtime's optimiser declares every domain it
knows when it saves a graph (the INT8 graphs that ``huskyai.training.quantize`` makes carry com.microsoft and
org.pytorch.aten with no node in them), so declarations are allowed: operators and functions are what
is refused.

The graph is parsed by the ``onnx`` package (protobuf), which never loads external data from bytes.
"""

from __future__ import annotations

from huskyai.errors import GraphPolicyError

# the ONNX operator sets ("" and "ai.onnx" are the same default domain); the shipped graphs use "" and "ai.onnx.ml"
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
ORT_FORMAT_ID = b"ORTM"  # the flatbuffer file identifier at bytes 4..8 that ONNX Runtime loads as its own format

EMBEDDED = "every tensor's data is embedded in the graph (no external data)"
DOMAINS = f"only the standard ONNX operator domains ({', '.join(repr(d) for d in sorted(STANDARD_DOMAINS))})"
PARSES = "the graph is an ONNX model (protobuf) with a graph"
KNOWN = "the graph holds only fields this ONNX version knows"


def _refuse(where: str, what: str, rule: str) -> GraphPolicyError:
    return GraphPolicyError(f"{where}: {what}; refusing the graph (graph policy: {rule})")


def _parse(onnx, data: bytes, where: str):
    """The ModelProto in ``data``, or GraphPolicyError when it is not one."""
    from google.protobuf.message import DecodeError

    if data[4:8] == ORT_FORMAT_ID:
        raise _refuse(where, "it is in ONNX Runtime's own model format, not ONNX", PARSES)
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RecursionError) as err:
        raise _refuse(where, f"it does not parse ({str(err)[:120]})", PARSES) from None
    if not model.HasField("graph"):
        raise _refuse(where, "it holds no graph", PARSES)
    return model


def _check_message(onnx, msg, where: str) -> None:
    """The rules that concern one message, whatever graph or function it sits in."""
    from google.protobuf.unknown_fields import UnknownFieldSet

    if len(UnknownFieldSet(msg)):
        raise _refuse(where, f"a {type(msg).__name__} carries fields this ONNX version does not know", KNOWN)
    if isinstance(msg, onnx.TensorProto):
        if msg.data_location == onnx.TensorProto.EXTERNAL or len(msg.external_data):
            location = next((e.value for e in msg.external_data if e.key == "location"), "?")
            raise _refuse(where, f"tensor {msg.name[:80]!r} keeps its data outside the graph "
                                 f"(external data {location[:80]!r})", EMBEDDED)
    elif isinstance(msg, onnx.NodeProto):
        if msg.domain not in STANDARD_DOMAINS:
            raise _refuse(where, f"node {msg.name[:80]!r} ({msg.op_type[:80]}) is in domain {msg.domain[:80]!r}",
                          DOMAINS)
    elif isinstance(msg, onnx.FunctionProto):
        if msg.domain not in STANDARD_DOMAINS:
            raise _refuse(where, f"function {msg.name[:80]!r} is defined in domain {msg.domain[:80]!r}", DOMAINS)


def check_graph(data: bytes, where: str) -> None:
    """Raise GraphPolicyError, in one line naming the rule and ``where`` (the file), unless the ONNX graph in
    ``data`` keeps to the policy above. Every message of the model is visited, so a tensor or a node is found
    wherever it is nested (subgraph attributes, lists of subgraphs, functions, sparse tensors)."""
    try:
        import onnx
        from google.protobuf.message import Message
    except ImportError as err:  # fail closed: a graph nobody checked is never served
        raise GraphPolicyError(f"{where}: cannot check the graph, the onnx package is missing ({err}): "
                               "pip install onnx") from None
    stack = [_parse(onnx, data, where)]
    while stack:
        msg = stack.pop()
        _check_message(onnx, msg, where)
        for field, value in msg.ListFields():
            if field.message_type is None:  # numbers, strings, bytes: nothing nested
                continue
            if isinstance(value, Message):
                stack.append(value)
            else:  # a repeated message field
                stack.extend(value)
