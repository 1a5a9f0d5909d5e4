import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from reasoning_sae import UserError
from reasoning_sae.steering.vector import load_vector


def test_a_safetensors_vector_with_its_hook_or_an_npy_with_one_given(tmp_path):
    vector = torch.randn(8)
    save_file({"v": vector}, str(tmp_path / "v.safetensors"), metadata={"hook": "blocks.2.hook_resid_post"})
    loaded = load_vector(tmp_path / "v.safetensors")
    assert torch.equal(loaded.vector_D, vector) and loaded.hook == "blocks.2.hook_resid_post"
    np.save(tmp_path / "v.npy", vector.double().numpy())
    loaded = load_vector(tmp_path / "v.npy", hook="blocks.1.hook_resid_post")
    assert loaded.vector_D.dtype == torch.float32 and loaded.hook == "blocks.1.hook_resid_post" and not loaded.metadata
    torch.testing.assert_close(loaded.vector_D, vector)


def test_bad_vector_files_are_one_line_errors(tmp_path):
    np.save(tmp_path / "matrix.npy", np.ones((2, 3)))
    np.save(tmp_path / "ints.npy", np.arange(3))
    np.save(tmp_path / "plain.npy", np.ones(3))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00not a safetensors file")
    save_file({"a": torch.ones(3), "b": torch.ones(3)}, str(tmp_path / "two.safetensors"))
    (tmp_path / "v.txt").write_text("1 2 3")
    for name, message in [
        ("missing.npy", "does not exist: run the score stage"),
        ("v.txt", "give a .safetensors or .npy file"),
        ("matrix.npy", r"shape \(2, 3\): write one 1-D float tensor"),
        ("ints.npy", "holds a int64 array"),
        ("plain.npy", "names no hook: give vector_hook="),
        ("junk.safetensors", "is unreadable"),
        ("two.safetensors", "2 tensors where one is expected"),
    ]:
        with pytest.raises(UserError, match=message) as err:
            load_vector(tmp_path / name)
        assert "\n" not in str(err.value)
