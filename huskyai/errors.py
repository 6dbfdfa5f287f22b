"""The errors a model file that cannot be trusted raises, shared by the export format and the signing key."""


class IntegrityError(RuntimeError):
    """A model file is missing, untrusted, or its content does not match the model card."""


class UnsignedError(IntegrityError):
    """The export's files match its card, but nobody vouches for the card (not shipped, pinned or signed)."""


class GraphPolicyError(IntegrityError):
    """An ONNX graph reaches outside its own bytes (external data, a non-standard operator domain)."""
