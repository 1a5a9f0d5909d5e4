"""Explicit architecture registration (SAELens' register_sae_class): one place names every architecture,
`SparseAutoencoder(cfg)` and `SparseAutoencoder.load` build the registered class, and a name cannot be taken twice."""

import copy
import pickle

import pytest
import torch

from reasoning_sae.errors import UserError
from reasoning_sae.sae import (
    ARCHITECTURES,
    BatchTopKSAE,
    JumpReLUSAE,
    MatryoshkaBatchTopKSAE,
    SAEConfig,
    SparseAutoencoder,
    StandardSAE,
    TopKSAE,
    TrainOutput,
    architecture_class,
    register_sae_class,
)
from reasoning_sae.sae import base


SHIPPED = "batchtopk, jumprelu, matryoshka_batchtopk, standard, topk"


@pytest.fixture
def scratch_name():
    """A fresh architecture name, unregistered again after the test."""
    name = "scratch-test-architecture"
    assert name not in ARCHITECTURES
    yield name
    base._REGISTRY.pop(name, None)


def test_the_shipped_architectures_are_registered_by_name():
    assert dict(ARCHITECTURES) == {"standard": StandardSAE, "topk": TopKSAE, "jumprelu": JumpReLUSAE,
                                   "batchtopk": BatchTopKSAE, "matryoshka_batchtopk": MatryoshkaBatchTopKSAE}
    assert architecture_class("standard") is StandardSAE and architecture_class("topk") is TopKSAE


@pytest.mark.parametrize(("architecture", "k", "cls"), [("standard", None, StandardSAE), ("topk", 2, TopKSAE)])
def test_the_base_class_builds_the_registered_class(tmp_path, architecture, k, cls):
    sae = SparseAutoencoder(SAEConfig(d_in=4, d_sae=8, architecture=architecture, k=k))
    assert type(sae) is cls and sae.W_enc.shape == (4, 8)
    assert type(copy.deepcopy(sae)) is cls and type(pickle.loads(pickle.dumps(sae))) is cls
    sae.save(tmp_path / "sae")
    assert type(SparseAutoencoder.load(tmp_path / "sae")) is cls


def test_a_name_registered_twice_is_an_error_and_keeps_the_first():
    class Other(StandardSAE):
        pass

    with pytest.raises(ValueError, match=r"SAE architecture 'standard' is already registered .*StandardSAE"):
        register_sae_class("standard", Other)
    with pytest.raises(ValueError, match="already registered"):
        register_sae_class("standard", StandardSAE)  # the same class again is a duplicate too
    assert ARCHITECTURES["standard"] is StandardSAE
    assert type(SparseAutoencoder(SAEConfig(d_in=4, d_sae=8))) is StandardSAE


def test_only_sparse_autoencoder_subclasses_and_real_names_register(scratch_name):
    with pytest.raises(TypeError, match="not a subclass of SparseAutoencoder"):
        register_sae_class(scratch_name, torch.nn.Linear)
    with pytest.raises(TypeError, match="not a subclass of SparseAutoencoder"):
        register_sae_class(scratch_name, SparseAutoencoder)
    with pytest.raises(ValueError, match="non-empty string"):
        register_sae_class("", StandardSAE)
    assert scratch_name not in ARCHITECTURES


def test_the_registry_is_read_only_outside_register_sae_class():
    with pytest.raises(TypeError):
        ARCHITECTURES["standard"] = TopKSAE  # type: ignore[index]
    assert not hasattr(SparseAutoencoder, "registry")  # no implicit registration on subclassing


def test_a_new_architecture_is_built_once_registered(scratch_name, tmp_path):
    class Shifted(SparseAutoencoder):  # subclassing alone registers nothing
        def activation(self, pre_BF):
            return torch.relu(pre_BF - 1)

        def training_loss(self, x_BD, **_):
            raise NotImplementedError

    cfg = SAEConfig(d_in=4, d_sae=8, architecture=scratch_name)
    with pytest.raises(UserError, match=rf"unknown SAE architecture '{scratch_name}': use one of {SHIPPED}"):
        SparseAutoencoder(cfg)
    register_sae_class(scratch_name, Shifted)
    assert ARCHITECTURES[scratch_name] is Shifted
    sae = SparseAutoencoder(cfg)
    assert type(sae) is Shifted
    sae.save(tmp_path / "sae")
    assert type(SparseAutoencoder.load(tmp_path / "sae")) is Shifted


def test_unknown_architecture_in_cfg_json_is_a_user_error(tmp_path):
    SparseAutoencoder(SAEConfig(d_in=4, d_sae=8)).save(tmp_path / "sae")
    cfg = (tmp_path / "sae" / "cfg.json").read_text().replace('"architecture": "standard"', '"architecture": "gated"')
    (tmp_path / "sae" / "cfg.json").write_text(cfg)
    with pytest.raises(UserError, match=f"unknown SAE architecture 'gated': use one of {SHIPPED}"):
        SparseAutoencoder.load(tmp_path / "sae")


def test_train_output_is_reexported():
    assert TrainOutput._fields == ("loss", "losses", "feats_BF", "recon_BD")
