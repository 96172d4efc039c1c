"""The embedded models in assets/: they load by default and stream in both anchor modes."""

import numpy as np
import pytest

from adastate.backends import load_backend
from adastate.backends.tiny import shipped_checkpoint
from adastate.stream import ChunkStream, StreamSettings
from conftest import SHIPPED_CHUNK_FRAMES


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
def test_shipped_checkpoints_stream_three_chunks(anchor):
    assert shipped_checkpoint(anchor) is not None, f"assets/tiny-{anchor} is missing"
    backend = load_backend("tiny", anchor=anchor)
    assert backend.notice is None  # trained weights, trained VAE: nothing to warn about
    results = list(ChunkStream(backend, "a slow pan to the right across snowy hills with pine trees",
                               StreamSettings(anchor=anchor, chunks=3, seed=0)))
    assert [r.index for r in results] == [0, 1, 2]
    for r in results:
        assert r.frames.shape == (SHIPPED_CHUNK_FRAMES, 64, 64, 3) and r.frames.dtype == np.uint8
        assert r.frames.std() > 5  # a picture, not a flat colour
    assert results[2].anchor_attention_share > 0


def test_shipped_models_differ_and_identify_themselves():
    """Each mode has its own weights, so a scene saved in one cannot be resumed on the other."""
    from adastate.scene import model_identity

    identities = [model_identity(load_backend("tiny", anchor=a).transformer) for a in ("adaptive", "static")]
    assert identities[0]["config_hash"] == identities[1]["config_hash"]
    assert identities[0]["weights_hash"] != identities[1]["weights_hash"]
