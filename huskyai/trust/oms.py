"""Public-key signatures of an export in the OpenSSF model-signing format (OMS), through ``model-signing``.

An OMS signature (``model.sig``, a Sigstore bundle) holds a DSSE envelope around an in-toto statement that
lists every signed file with its sha256, signed by an elliptic-curve key (P-256, P-384 or P-521). Anyone
with the public key can check it, here (``verify_bundle``) or with ``model_signing verify key``; only the
holder of the private key can make one (``sign_digests``).

Both directions work on digests that Husky AI computed itself from the bytes it read once: ``sign_digests``
signs a manifest of those digests (it never reads the folder again, so what was checked is what is signed),
and ``verify_bundle`` checks the signature and returns the signed digests, which the caller compares with
its own before a byte of the model is parsed. The statement is the one ``model_signing`` writes for a
folder hashed file by file with sha256 (``hashing.Config().use_file_serialization()``), and it records the
folder's other entries, ``model.sig`` among them, as ignored paths: ``model_signing verify`` on the signed
folder recomputes the same manifest. Keys are PEM files; this module never makes or stores one.

``model_signing`` (and sigstore, which it imports) is imported when a signature is made or checked, not with
this module: a load that checks no key does not pay for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from huskyai.boundedread import read_at_most
from huskyai.errors import IntegrityError

SIGNATURE_FORMAT = "OMS v1.0 (OpenSSF model signing: in-toto statement in a Sigstore bundle)"
MAX_KEY_BYTES = 64 * 1024  # a PEM key is a few hundred bytes
KEY_SOURCE_TYPES = (str, Path, bytes)


@dataclass(frozen=True)
class SignedFiles:
    """What a verified signature vouches for: each signed file's sha256 (hex), and the key that signed."""
    digests: dict[str, str]
    fingerprint: str  # the public key's fingerprint (huskyai.trust.oms.fingerprint)


class _Held:
    """Bytes already read, handed to model_signing where it would read a file by path: what was read and
    checked is what it uses."""

    def __init__(self, data: bytes):
        self._data = data

    def read_bytes(self) -> bytes:
        return self._data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self._data.decode(encoding)


def read_key(key: str | Path | bytes, what: str = "public key") -> bytes:
    """The PEM bytes of ``key``: the bytes themselves when given as bytes, else the file's (at most 64 KiB)."""
    if isinstance(key, bytes):
        return key
    path = Path(key)

    def unreadable(err: OSError) -> IntegrityError:
        return IntegrityError(f"{path}: cannot read the {what} ({err.strerror or err})")

    try:
        f = open(path, "rb")
    except OSError as err:
        raise unreadable(err) from None
    with f:
        return read_at_most(f, MAX_KEY_BYTES, unreadable,
                            lambda: IntegrityError(f"{path}: larger than any PEM {what}; is it the key file?"))


def _public_key(pem: bytes, where: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as err:
        hint = " (that is a private key: give its public half)" if b"PRIVATE KEY" in pem else ""
        raise IntegrityError(f"{where}: not a PEM public key{hint} ({err})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ("secp256r1", "secp384r1",
                                                                                   "secp521r1"):
        raise IntegrityError(f"{where}: OMS signatures use an elliptic-curve key (P-256, P-384 or P-521)")
    return key


def fingerprint_of(public_key) -> str:
    """sha256 of the key's DER SubjectPublicKeyInfo, first 16 hex digits: how a key is named to a person."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def fingerprint(public_key_pem: bytes, where: str = "public key") -> str:
    """The fingerprint of a PEM public key (``fingerprint_of``)."""
    return fingerprint_of(_public_key(public_key_pem, where))


def _pem_hint(public_key) -> str:
    """What model_signing records in a bundle to name its key: sha256 of the PEM public key."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _signature(bundle: bytes, where: str):
    """model_signing's Signature for the bundle's bytes, parsed by its own reader; IntegrityError if unreadable."""
    from model_signing._signing import sign_sigstore_pb

    try:
        return sign_sigstore_pb.Signature.read(_Held(bundle))
    except Exception as err:  # noqa: BLE001 - any failure to parse is one refusal: not a signature bundle
        raise IntegrityError(f"{where}: not an OMS signature bundle ({type(err).__name__})") from None


def _digests(manifest, where: str) -> dict[str, str]:
    """name -> sha256 hex of a manifest signed file by file with sha256; IntegrityError for any other kind."""
    kind = manifest.serialization_type
    if kind.get("method") != "files" or kind.get("hash_type") != "sha256":
        raise IntegrityError(f"{where}: signed as {kind.get('method')} with {kind.get('hash_type')}; Husky AI "
                             "checks signatures made file by file with sha256 (model_signing's default)")
    digests = {}
    for resource in manifest.resource_descriptors():
        if resource.digest.algorithm != "sha256":
            raise IntegrityError(f"{where}: {resource.identifier} is signed with {resource.digest.algorithm}, "
                                 "not sha256")
        digests[resource.identifier] = resource.digest.digest_hex
    return digests


def verify_bundle(bundle: bytes, public_key_pem: bytes, where: str = "model.sig") -> SignedFiles:
    """Check an OMS bundle's signature with the public key; the signed files' sha256 digests if it holds.

    IntegrityError, one line, if the key is not an EC public key, the bundle cannot be read, it was made with
    another key, or its statement was changed after signing. Nothing of the model is read here."""
    from cryptography.exceptions import InvalidSignature
    from model_signing._signing import sign_ec_key

    key = _public_key(public_key_pem, "the public key")
    fp = fingerprint_of(key)
    signature = _signature(bundle, where)
    hint = getattr(signature.bundle.verification_material.public_key, "hint", None)  # None: a certificate
    if not hint:
        raise IntegrityError(f"{where}: the signature does not name its key (a model_signing release before 1.0 "
                             "made it): sign it again")
    if hint != _pem_hint(key):
        raise IntegrityError(f"{where}: signed by another key, not by key {fp} (the one given); refusing it")
    try:
        manifest = sign_ec_key.Verifier(_Held(public_key_pem)).verify(signature)
    except (InvalidSignature, ValueError, KeyError, TypeError) as err:
        raise IntegrityError(f"{where}: the signature does not verify with key {fp} (its statement was changed "
                             f"after signing, or another key made it; {type(err).__name__}); refusing it") from None
    return SignedFiles(_digests(manifest, where), fp)


def unverified_digests(bundle: bytes, where: str = "model.sig") -> dict[str, str]:
    """The digests a bundle's statement claims, its signature NOT checked: only to tell whether a signature
    still covers a card (a stale one, made before the card changed), never to trust anything."""
    from model_signing._signing import signing

    envelope = _signature(bundle, where).bundle.dsse_envelope  # its payload: the statement's JSON bytes
    try:
        return _digests(signing.dsse_payload_to_manifest(json.loads(envelope.payload)), where)
    except (ValueError, KeyError, TypeError) as err:
        raise IntegrityError(f"{where}: its statement cannot be read ({type(err).__name__})") from None


def sign_digests(digests: Mapping[str, str], model_name: str, private_key_pem: bytes, ignored: Iterable[str] = (),
                 password: bytes | None = None, where: str = "the private key") -> tuple[bytes, str]:
    """An OMS bundle signing ``digests`` (file name -> sha256 hex) as the folder ``model_name``, and the signing
    key's fingerprint. ``ignored``: the folder's other entries (``model.sig`` first), recorded in the statement
    so that ``model_signing verify`` on the folder leaves them out as this signature does."""
    from cryptography.hazmat.primitives import serialization
    from model_signing import manifest
    from model_signing._hashing import hashing
    from model_signing._signing import sign_ec_key, signing

    try:
        private = serialization.load_pem_private_key(private_key_pem, password)
    except TypeError as err:  # encrypted without a password, or a password for a key that has none
        raise IntegrityError(f"{where}: {err}") from None
    except ValueError as err:
        raise IntegrityError(f"{where}: not a PEM private key, or the wrong password ({err})") from None
    public = private.public_key()
    _public_key(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
                where)
    items = [manifest.FileManifestItem(path=PurePosixPath(name), digest=hashing.Digest("sha256", bytes.fromhex(d)))
             for name, d in sorted(digests.items())]
    kind = manifest._FileSerialization("sha256", False, [PurePosixPath(p) for p in dict.fromkeys(ignored)])
    signer = sign_ec_key.Signer(_Held(private_key_pem), password)
    signature = signer.sign(signing.Payload(manifest.Manifest(model_name, items, kind)))
    return signature.bundle.to_json().encode(), fingerprint_of(public)
