"""The SAELens directory format: our saves load in SAELens, SAELens' (v6 and v5-style) load here, feature stats
round-trip, saves are atomic, and bad directories raise a UserError that names the problem."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from torch.testing import assert_close

from reasoning_sae.errors import UserError
from reasoning_sae.sae import SAEConfig, SparseAutoencoder

D_IN, D_SAE, K = 10, 32, 4
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*model_from_pretrained_kwargs:UserWarning")
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


def randomize(module, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in PARAMS:
            param = getattr(module, name)
            param.copy_(torch.randn(param.shape, generator=g) * 0.3)
        module.W_dec.mul_(torch.rand(module.W_dec.shape[0], 1, generator=g) + 0.5)  # non-unit decoder rows
    return module


def ours(architecture: str = "standard", apply_b_dec: bool = True, seed: int = 0, **metadata):
    k = K if architecture == "topk" else None
    cfg = SAEConfig(D_IN, D_SAE, architecture=architecture, apply_b_dec_to_input=apply_b_dec, k=k, metadata=metadata)
    return randomize(SparseAutoencoder(cfg), seed)


def x_batch(seed: int = 1):
    return torch.randn(16, D_IN, generator=torch.Generator().manual_seed(seed))


def assert_same_sae(a, b, x=None):
    x = x_batch() if x is None else x
    with torch.no_grad():
        for name in PARAMS:
            assert_close(getattr(a, name), getattr(b, name), msg=name)
        assert_close(a.encode(x), b.encode(x), rtol=1e-5, atol=1e-5)
        assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)


# --- interoperability with SAELens ------------------------------------------------------------------------------


@pytest.mark.parametrize("apply_b_dec", [False, True])
@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_our_save_loads_in_sae_lens(tmp_path, architecture, apply_b_dec):
    sae = ours(architecture, apply_b_dec, model_name="tiny", hook_name="blocks.3.hook_resid_post")
    sae.save(tmp_path / "sae")
    theirs = SAE.load_from_disk(tmp_path / "sae")
    assert isinstance(theirs, {"standard": StandardSAE, "topk": TopKSAE}[architecture])
    assert theirs.cfg.apply_b_dec_to_input is apply_b_dec
    assert theirs.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    assert theirs.cfg.metadata.model_name == "tiny"
    if architecture == "topk":
        assert theirs.cfg.k == K and theirs.cfg.rescale_acts_by_decoder_norm is False
    assert_same_sae(sae, theirs)


@pytest.mark.parametrize("apply_b_dec", [False, True])
@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_sae_lens_save_loads_here(tmp_path, architecture, apply_b_dec):
    metadata = SAEMetadata(model_name="tiny", hook_name="blocks.5.hook_resid_post", context_size=128)
    if architecture == "standard":
        theirs = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec,
                                               metadata=metadata))
    else:
        theirs = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=apply_b_dec,
                                       rescale_acts_by_decoder_norm=False, metadata=metadata))
    randomize(theirs, seed=2)
    theirs.save_model(tmp_path / "sae")
    sae = SparseAutoencoder.load(tmp_path / "sae")
    assert sae.cfg.architecture == architecture and sae.cfg.apply_b_dec_to_input is apply_b_dec
    assert sae.cfg.k == (K if architecture == "topk" else None)
    assert sae.cfg.metadata["hook_name"] == "blocks.5.hook_resid_post"
    assert sae.cfg.metadata["model_name"] == "tiny" and sae.cfg.metadata["context_size"] == 128
    assert sae.feature_stats == {}
    assert_same_sae(sae, theirs)


def test_sae_lens_topk_with_decoder_norm_rescaling_loads_here(tmp_path):
    """SAELens' default for topk training: pre-activations scaled by decoder norms before the selection. Loading
    must keep SAELens' encoding and reconstruction (folding the norms does exactly that)."""
    theirs = randomize(TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=True)), 3)
    theirs.save_model(tmp_path / "sae")
    sae = SparseAutoencoder.load(tmp_path / "sae")
    x = x_batch()
    with torch.no_grad():
        assert_close(sae.encode(x), theirs.encode(x), rtol=1e-5, atol=1e-5)
        assert_close(sae(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_round_trip_here(tmp_path):
    for architecture in ("standard", "topk"):
        sae = ours(architecture, apply_b_dec=False, hook_name="blocks.1.hook_resid_post", tokens_seen=12345)
        sae.save(tmp_path / architecture)
        loaded = SparseAutoencoder.load(tmp_path / architecture)
        assert type(loaded) is type(sae)
        assert loaded.cfg == sae.cfg.replace(metadata={**sae.cfg.metadata, "sae_lens_version": "6.0.0"})
        assert_same_sae(loaded, sae)


V5_CFG = {
    "architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cuda",
    "model_name": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "hook_name": "blocks.19.hook_resid_post",
    "hook_layer": 19, "hook_head_index": None, "activation_fn_str": "relu", "activation_fn_kwargs": {},
    "apply_b_dec_to_input": False, "finetuning_scaling_factor": False, "sae_lens_training_version": "5.5.2",
    "prepend_bos": False, "dataset_path": "andreuka18/OpenThoughts-10k-DeepSeek-R1", "dataset_trust_remote_code": True,
    "context_size": 1024, "normalize_activations": "expected_average_only_in", "neuronpedia_id": None,
    "model_from_pretrained_kwargs": {"center_writing_weights": False}, "seqpos_slice": [None],
}


def write_v5(path, cfg: dict, weights: dict[str, torch.Tensor]):
    path.mkdir()
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file(weights, str(path / "sae_weights.safetensors"))


def random_weights(seed: int = 4, d_in: int = D_IN, d_sae: int = D_SAE):
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, d_sae, generator=g), "b_enc": torch.randn(d_sae, generator=g) * 0.1,
            "W_dec": torch.randn(d_sae, d_in, generator=g), "b_dec": torch.randn(d_in, generator=g)}


def test_v5_flat_cfg_loads(tmp_path):
    weights = random_weights()
    write_v5(tmp_path / "sae", V5_CFG, weights)
    sae = SparseAutoencoder.load(tmp_path / "sae")
    assert sae.cfg.architecture == "standard" and sae.cfg.apply_b_dec_to_input is False and sae.cfg.k is None
    meta = sae.cfg.metadata
    assert meta["hook_name"] == "blocks.19.hook_resid_post" and meta["hook_layer"] == 19
    assert meta["model_name"] == "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"
    assert meta["context_size"] == 1024 and meta["sae_lens_training_version"] == "5.5.2"
    assert meta["dataset_path"] == "andreuka18/OpenThoughts-10k-DeepSeek-R1"
    x = x_batch()
    with torch.no_grad():
        assert_close(sae.encode(x), torch.relu(x @ weights["W_enc"] + weights["b_enc"]))
    # SAELens reads the same directory the same way
    theirs = SAE.load_from_disk(tmp_path / "sae")
    assert_same_sae(sae, theirs, x)
    # and our re-save keeps the provenance, in SAELens v6's layout
    sae.save(tmp_path / "resaved")
    raw = json.loads((tmp_path / "resaved" / "cfg.json").read_text())
    assert raw["metadata"]["hook_name"] == "blocks.19.hook_resid_post" and "hook_name" not in raw
    assert SparseAutoencoder.load(tmp_path / "resaved").cfg.metadata == meta | {"sae_lens_version": "6.0.0"}


@pytest.mark.parametrize("variant", [
    {"architecture": "topk", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": K}},
    {"architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": K}},  # pre-5 topk
])
def test_v5_topk_cfg_loads(tmp_path, variant):
    write_v5(tmp_path / "sae", {**V5_CFG, **variant}, random_weights())
    sae = SparseAutoencoder.load(tmp_path / "sae")
    assert sae.cfg.architecture == "topk" and sae.cfg.k == K
    assert_same_sae(sae, SAE.load_from_disk(tmp_path / "sae"))


def test_v5_cfg_defaults_apply_b_dec_to_input_true(tmp_path):
    cfg = {key: value for key, value in V5_CFG.items() if key != "apply_b_dec_to_input"}
    write_v5(tmp_path / "sae", cfg, random_weights())
    assert SparseAutoencoder.load(tmp_path / "sae").cfg.apply_b_dec_to_input is True


def test_dtype_from_cfg(tmp_path):
    write_v5(tmp_path / "sae", {**V5_CFG, "dtype": "torch.bfloat16"}, random_weights())
    sae = SparseAutoencoder.load(tmp_path / "sae")
    assert sae.cfg.dtype == "bfloat16" and sae.W_enc.dtype == torch.bfloat16


# --- feature stats, atomic save ---------------------------------------------------------------------------------


def test_feature_stats_round_trip(tmp_path):
    sae = ours()
    stats = {"sparsity": torch.linspace(-6, 0, D_SAE), "max_activation": torch.rand(D_SAE, dtype=torch.float64)}
    sae.save(tmp_path / "sae", feature_stats=stats)
    assert (tmp_path / "sae" / "sparsity.safetensors").is_file()
    loaded = SparseAutoencoder.load(tmp_path / "sae")
    assert set(loaded.feature_stats) == set(stats)
    for name, value in stats.items():
        assert_close(loaded.feature_stats[name], value.float())
    # the SAELens convention: `sparsity` = log10 density, readable by any safetensors reader
    assert_close(load_file(str(tmp_path / "sae" / "sparsity.safetensors"))["sparsity"], stats["sparsity"])


def test_save_is_atomic_and_overwrites(tmp_path):
    first, second = ours(seed=5), ours(seed=6)
    first.save(tmp_path / "sae", feature_stats={"sparsity": torch.zeros(D_SAE)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
    second.save(tmp_path / "sae")  # over an existing directory: replaced whole, stale files gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    loaded = SparseAutoencoder.load(tmp_path / "sae")
    assert_same_sae(loaded, second)
    assert loaded.feature_stats == {}


def test_failed_save_leaves_old_directory(tmp_path):
    first = ours(seed=5)
    first.save(tmp_path / "sae")
    with pytest.raises(Exception):
        ours(seed=6).save(tmp_path / "sae", feature_stats={"sparsity": "not a tensor"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
    assert_same_sae(SparseAutoencoder.load(tmp_path / "sae"), first)


def test_save_creates_parents(tmp_path):
    ours().save(tmp_path / "a" / "b" / "sae")
    assert (tmp_path / "a" / "b" / "sae" / "cfg.json").is_file()


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "sae"
    ours().save(path)
    return path


def edit_cfg(path, **changes):
    raw = json.loads((path / "cfg.json").read_text())
    raw.update(changes)
    (path / "cfg.json").write_text(json.dumps(raw))


def load_error(path) -> str:
    with pytest.raises(UserError) as info:
        SparseAutoencoder.load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_directory(tmp_path):
    message = load_error(tmp_path / "nope")
    assert "does not exist" in message and str(tmp_path / "nope") in message


def test_path_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "does not exist" in load_error(tmp_path / "file")


@pytest.mark.parametrize("name", ["cfg.json", "sae_weights.safetensors"])
def test_missing_file(saved, name):
    (saved / name).unlink()
    assert f"no {name}" in load_error(saved)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"a string"', "null", "\udcff"])
def test_corrupt_cfg(saved, text):
    (saved / "cfg.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    assert "unreadable cfg.json" in load_error(saved)


@pytest.mark.parametrize("change", [{"d_in": "ten"}, {"d_sae": None}])
def test_bad_cfg_values(saved, change):
    edit_cfg(saved, **change)
    assert "cfg.json" in load_error(saved)


def test_cfg_without_sizes(saved):
    raw = json.loads((saved / "cfg.json").read_text())
    del raw["d_sae"]
    (saved / "cfg.json").write_text(json.dumps(raw))
    assert "unreadable cfg.json" in load_error(saved)


@pytest.mark.parametrize("data", [bytes(range(256)) * 4, b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_weights(saved, data):
    (saved / "sae_weights.safetensors").write_bytes(data)
    assert "unreadable sae_weights.safetensors" in load_error(saved)


def test_truncated_weights(saved):
    data = (saved / "sae_weights.safetensors").read_bytes()
    (saved / "sae_weights.safetensors").write_bytes(data[: len(data) // 2])
    assert "unreadable sae_weights.safetensors" in load_error(saved)


def test_wrong_shape(saved):
    weights = load_file(str(saved / "sae_weights.safetensors"))
    weights["W_dec"] = torch.zeros(D_SAE, D_IN + 1)
    save_file(weights, str(saved / "sae_weights.safetensors"))
    message = load_error(saved)
    assert "W_dec" in message and f"({D_SAE}, {D_IN + 1})" in message and f"({D_SAE}, {D_IN})" in message


def test_missing_tensor(saved):
    weights = load_file(str(saved / "sae_weights.safetensors"))
    del weights["b_enc"]
    save_file(weights, str(saved / "sae_weights.safetensors"))
    assert "no tensor b_enc" in load_error(saved)


def test_unknown_architecture(saved):
    edit_cfg(saved, architecture="gated")
    message = load_error(saved)
    assert "unknown SAE architecture 'gated'" in message and "jumprelu, matryoshka_batchtopk, standard, topk" in message


@pytest.mark.parametrize("k", [0, D_SAE + 1, None])
def test_topk_bad_k(saved, k):
    edit_cfg(saved, architecture="topk", k=k)
    message = load_error(saved)
    assert "0 < k <= d_sae" in message and f"k={k}" in message


@pytest.mark.parametrize("norm", ["layer_norm", "constant_norm_rescale", "covariance_whitening"])
def test_runtime_normalisation(saved, norm):
    edit_cfg(saved, normalize_activations=norm)
    message = load_error(saved)
    assert "not supported" in message and norm in message


def test_unknown_dtype(saved):
    edit_cfg(saved, dtype="float17")
    assert "dtype" in load_error(saved)


def test_corrupt_sparsity(saved):
    (saved / "sparsity.safetensors").write_bytes(b"garbage")
    assert "unreadable sparsity.safetensors" in load_error(saved)


def test_pre_v4_hook_point_is_hook_name(tmp_path):
    cfg = {key: value for key, value in V5_CFG.items() if key != "hook_name"} | {"hook_point": "blocks.2.hook_resid_pre"}
    write_v5(tmp_path / "sae", cfg, random_weights())
    assert SparseAutoencoder.load(tmp_path / "sae").cfg.metadata["hook_name"] == "blocks.2.hook_resid_pre"
