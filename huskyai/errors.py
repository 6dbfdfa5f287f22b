"""The error a model file that cannot be trusted raises, shared by the export format and the signing key."""


class IntegrityError(RuntimeError):
    """A model file is missing, untrusted, or its content does not match the model card."""
