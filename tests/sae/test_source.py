"""The SAE of a run from a local folder, the hub (through a hub-layout HF cache, offline) or SAELens' loader."""

import json

import pytest
import torch
from huggingface_hub import constants

from reasoning_sae import SparseAutoencoder, UserError
from reasoning_sae.models.config import model_config
from reasoning_sae.sae.source import (PAPER_REPO_ID, PAPER_SUBFOLDER, SAESource, check_feature_ids, check_fits,
                                      fetch)
from tests.hub import put_in_hf_cache
from tests.helpers import random_sae


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty HF cache, offline, as HF_HUB_OFFLINE=1 HF_HUB_CACHE=... would give."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def saved(tmp_path):
    sae = random_sae(d_in=576, d_sae=16)
    sae.save(tmp_path / "sae")
    return sae, tmp_path / "sae"


def test_a_hub_sae_is_read_from_the_hf_cache_at_its_pinned_commit(hub, saved, tmp_path):
    sae, folder = saved
    commit = put_in_hf_cache(hub, PAPER_REPO_ID, folder, PAPER_SUBFOLDER)
    for revision in (None, commit):
        source = SAESource(kind="hub", repo_id=PAPER_REPO_ID, revision=revision, subfolder=PAPER_SUBFOLDER)
        fetched = fetch(source, tmp_path / "cache")
        assert fetched.path.is_relative_to(hub) and fetched.provenance["commit"] == commit
        assert fetched.fingerprint == f"hub:{PAPER_REPO_ID}@{commit}/{PAPER_SUBFOLDER}"
        x = torch.randn(3, 576)
        torch.testing.assert_close(SparseAutoencoder.load(fetched.path).encode(x), sae.encode(x))
        assert source.is_paper_release()
    assert not SAESource(kind="hub", repo_id="someone/else", subfolder=PAPER_SUBFOLDER).is_paper_release()


def test_a_hub_sae_that_is_not_cached_offline_names_the_download(hub, tmp_path):
    source = SAESource(kind="hub", repo_id=PAPER_REPO_ID, subfolder=PAPER_SUBFOLDER, revision="abc123")
    with pytest.raises(UserError, match=rf"is not in the HF cache .* \(offline\): download it where there is network "
                                        rf"\(hf download {PAPER_REPO_ID} --include '{PAPER_SUBFOLDER}/\*' "
                                        rf"--revision abc123\) or unset HF_HUB_OFFLINE"):
        fetch(source, tmp_path)


def test_a_wrong_subfolder_is_named(hub, saved, tmp_path):
    put_in_hf_cache(hub, "org/saes", saved[1], "layer_3")
    with pytest.raises(UserError, match=r"hub SAE org/saes@main/layer_9 has no cfg.json .*: check sae_source.subfolder"):
        fetch(SAESource(kind="hub", repo_id="org/saes", subfolder="layer_9"), tmp_path)


def test_sae_lens_loads_a_hub_repo_and_we_save_it_in_our_format(hub, saved, tmp_path):
    sae, folder = saved
    put_in_hf_cache(hub, "org/saes", folder, "layer_3")
    source = SAESource(kind="sae_lens", release="org/saes", sae_id="layer_3")
    fetched = fetch(source, tmp_path / "cache")
    assert fetched.path.is_relative_to(tmp_path / "cache") and fetched.provenance["kind"] == "sae_lens"
    x = torch.randn(3, 576)
    torch.testing.assert_close(SparseAutoencoder.load(fetched.path).encode(x), sae.encode(x))
    assert fetch(source, tmp_path / "cache") == fetched  # saved once, read back


def test_sae_lens_registry_errors_are_one_line(hub, tmp_path):
    with pytest.raises(UserError, match=r"SAELens release gpt2-small-res-jb / nope: ID nope not found in release"):
        fetch(SAESource(kind="sae_lens", release="gpt2-small-res-jb", sae_id="nope"), tmp_path)
    with pytest.raises(UserError, match=r"blocks.0.hook_resid_pre is not in the HF cache"):
        fetch(SAESource(kind="sae_lens", release="gpt2-small-res-jb", sae_id="blocks.0.hook_resid_pre"), tmp_path)


def test_local_folders_and_settings_are_checked(tmp_path, saved):
    assert fetch(SAESource(kind="local", path=str(saved[1])), tmp_path).path == saved[1]
    with pytest.raises(UserError, match=r"sae_source.path=.* has no cfg.json"):
        fetch(SAESource(kind="local", path=str(tmp_path / "nothing")), tmp_path)
    with pytest.raises(UserError, match=r"sae_source.kind=hub needs sae_source.repo_id"):
        SAESource(kind="hub")
    with pytest.raises(UserError, match=r"unknown sae_source.kind 'ftp'"):
        SAESource(kind="ftp")
    with pytest.raises(UserError, match=r"unknown sae_source setting\(s\) \['colour'\]"):
        SAESource.from_mapping({"colour": "red"})


def test_an_sae_that_does_not_fit_the_model_is_refused_before_it_loads(tmp_path, saved):
    demo = model_config("smollm2-135m-instruct")  # d_model 576, 30 layers
    check_fits(saved[1], demo, "it")
    narrow = random_sae(d_in=32, d_sae=16)
    narrow.save(tmp_path / "narrow")
    with pytest.raises(UserError, match=r"it reads d_in=32 but smollm2-135m-instruct has d_model=576"):
        check_fits(tmp_path / "narrow", demo, "it")
    deep = random_sae(d_in=576, d_sae=16)
    deep.cfg.metadata["hook_name"] = "blocks.31.hook_resid_post"
    deep.save(tmp_path / "deep")
    with pytest.raises(UserError, match=r"it reads blocks.31.hook_resid_post, which smollm2-135m-instruct does not "
                                        r"have \(layer 31 .* out of range"):
        check_fits(tmp_path / "deep", demo, "it")
    cfg = json.loads((saved[1] / "cfg.json").read_text())
    del cfg["metadata"]["hook_name"]
    (saved[1] / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="names no hook_name"):
        check_fits(saved[1], demo, "it")


def test_feature_ids_beyond_the_sae():
    check_feature_ids([0, 15], 16, "steering.features")
    with pytest.raises(UserError, match=r"steering.features names features \[16, 61104\] but the SAE has 16"):
        check_feature_ids([3, 61104, 16], 16, "steering.features")
