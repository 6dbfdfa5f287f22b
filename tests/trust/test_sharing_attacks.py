"""The red-team kit's tamper cases for sharing a model: each new route refused before a byte of the model is
parsed, and no pickle fetched or run."""

from __future__ import annotations

import pytest
from trust.helpers import shipped_copy

from huskyai.redteam.tamper import tamper_sharing


@pytest.mark.slow
def test_every_sharing_route_refuses_its_tampering(tmp_path):
    result = tamper_sharing(shipped_copy(tmp_path), tmp_path / "work", positive=1)
    assert result["sharing_all_refused"], result
    other = result["oms_other_key"]
    assert "signed by another key" in other["load"] and "Key mismatch" in other["model_signing_verify"]
    changed = result["oms_changed_after_signing"]
    assert "does not match the model card" in changed["load_weights_changed"]
    assert "not the card that model.sig signs" in changed["load_card_rehashed"]
    assert "Hash mismatch" in changed["model_signing_verify"]  # the package's own verifier agrees
    hub = result["hub_changed_under_pinned_commit"]
    assert hub["genuine"] == "ACCEPTED"
    assert "does not match the model card" in hub["blob_changed_signed"] + hub["blob_changed_pinned"]
    assert "not the card that model.sig signs" in hub["card_and_blob_changed_signed"]
    assert "is not the pinned" in hub["card_and_blob_changed_pinned"]
    assert "outside its repository's blobs" in hub["link_out_of_cache"]
    smuggled = result["hub_pickle_smuggled"]
    assert "learner.pkl" not in smuggled["fetched"] and "model.pkl" not in smuggled["fetched"]
    assert all("card lists learner.pkl" in smuggled[k] for k in ("load_trusting_it", "load_pinned", "verify"))
    assert smuggled["payload_ran"] is False
    refusals = [v for case in result.values() if isinstance(case, dict) for v in case.values() if isinstance(v, str)]
    assert not any(word in v for v in refusals for word in ("JSON", "GraphPolicy", "DecodeError", "protobuf"))
