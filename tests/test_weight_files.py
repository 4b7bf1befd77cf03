"""Weight files: only safetensors is read, and nothing in a file is ever executed."""

import pickle

import numpy as np
import pytest

from parity.weights import WeightsFileError, load_weights, save_weights


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    save_weights({"a.weight": np.ones((3, 4), np.float32), "a.bias": np.zeros(4, np.float64)}, path)
    return path


class Payload:
    """A pickle that would create a marker file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda raw: raw[:-7], "not a valid safetensors file"),
        (lambda raw: raw[:20], "not a valid safetensors file"),
        (lambda raw: b"", "not a valid safetensors file"),
        (lambda raw: raw[:8] + b"#" + raw[9:], "not a valid safetensors file"),
        (lambda raw: b"name,value\na,1\n", "not a valid safetensors file"),
        (lambda raw: b"\x89PNG\r\n\x1a\n" + bytes(64), "not a valid safetensors file"),
    ],
    ids=["truncated", "header-only", "empty", "corrupted-header", "csv", "png"],
)
def test_broken_or_foreign_files_raise_a_clear_error(tmp_path, good_file, mangle, message):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(mangle(good_file.read_bytes()))
    with pytest.raises(WeightsFileError, match=f"^{bad}: {message}"):
        load_weights(bad)


def test_a_pickle_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    bad = tmp_path / "weights.pkl"
    bad.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(WeightsFileError, match="a pickle-based file .* only safetensors files are read"):
        load_weights(bad)
    assert not marker.exists()


def test_a_torch_checkpoint_is_refused_without_being_unpickled(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "code-ran"
    bad = tmp_path / "model.pth"
    torch.save({"stem.0.weight": torch.zeros(2), "evil": Payload(marker)}, bad)
    with pytest.raises(WeightsFileError, match=r"PyTorch \.pth/\.pt or pickle"):
        load_weights(bad)
    assert not marker.exists()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsFileError, match="missing.safetensors: cannot read weights: No such file or directory"):
        load_weights(tmp_path / "missing.safetensors")


def test_a_good_file_round_trips(good_file):
    loaded = load_weights(good_file)
    assert loaded["a.bias"].dtype == np.float64 and loaded["a.weight"].shape == (3, 4)
