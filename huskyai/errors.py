"""Every error Husky AI raises on purpose, under one base class, :class:`HuskyAIError`.

Each message is one line meant for a person, naming the file, setting or rule at fault; the CLI prints
it as ``error: ...`` with exit code 1 and no traceback, and the app shows it as a message. The second base
of each class keeps the built-in family it belongs to (an unreadable photo is also a ValueError), so
callers that caught those before still do. Decide by class, never by matching a message's text.
"""


class HuskyAIError(Exception):
    """An error whose message is for the user: what is wrong, in one line."""


# ---- trust: model files ----
class IntegrityError(HuskyAIError, RuntimeError):
    """A model file is missing, untrusted, or its content does not match the model card."""


class UnsignedError(IntegrityError):
    """The export's files match its card, but nobody vouches for the card (not shipped, pinned or signed)."""


class GraphPolicyError(IntegrityError):
    """An ONNX graph reaches outside its own bytes (external data, a non-standard operator domain)."""


class HubError(IntegrityError):
    """The Hugging Face Hub could not be reached, or refused an upload; the message says why in one line."""


# ---- input: photos, folders, settings ----
class InvalidImageError(HuskyAIError, ValueError):
    """The input is not an image Husky AI can read; the message says why, for a person."""


class NotFollowedError(InvalidImageError):
    """The photo's path is a symbolic link: photos are never read through one."""


class DataError(HuskyAIError, ValueError):
    """The photo folder cannot be used for training or evaluation; the message says why."""


class SettingsError(HuskyAIError, ValueError):
    """A setting in the environment has a value the app cannot use; the message names it."""


class ScoreError(HuskyAIError, ValueError):
    """The source or the output file of bulk scoring cannot be used; the message says why."""


# ---- machinery: what is installed and what can run ----
class MissingExtraError(HuskyAIError, ImportError):
    """An optional part of Husky AI was asked for but its packages are not installed."""


class EngineError(HuskyAIError, RuntimeError):
    """No inference engine could be set up."""


class BackboneError(HuskyAIError, RuntimeError):
    """Pretrained weights could not be obtained or did not fit the architecture."""


class QuantizeError(HuskyAIError, RuntimeError):
    """The graph cannot be quantized as asked (no calibration photos, onnxruntime missing)."""


# ---- certified answers (randomized smoothing) ----
class CertifyError(HuskyAIError, ValueError):
    """A certified answer cannot be computed as asked (samples, alpha or sigma out of range)."""


class NotCertifiableError(CertifyError):
    """The model was not trained under noise (its card has no noise_sigma): load the noise-trained one."""
