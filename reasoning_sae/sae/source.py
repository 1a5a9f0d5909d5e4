"""Where the SAE of a run comes from (the `sae_source` config group): the train stage's output, a local
SAELens-format folder, a Hugging Face hub repo (pinned revision, subfolder), or a SAELens registry release.

Hub SAEs go through `huggingface_hub`, so the HF cache, `HF_HUB_OFFLINE`, `HF_TOKEN` and `HF_HOME` behave as
everywhere else. A registry release is loaded by SAELens itself (its converters handle non-SAELens layouts) and
saved once, in our format, under $REASONING_SAE_CACHE/saes/."""

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

from reasoning_sae.errors import UserError
from reasoning_sae.publish import atomic_dir
from reasoning_sae.sae.io import CFG, WEIGHTS

KINDS = ("train", "local", "hub", "sae_lens")
# The authors' release (AIRI-Institute/SAE-Reasoning): the paper's SAE on DeepSeek-R1-Distill-Llama-8B, layer 19.
PAPER_REPO_ID = "andreuka18/deepseek-r1-distill-llama-8b-lmsys-openthoughts"
PAPER_SUBFOLDER = "blocks.19.hook_resid_post"


@dataclass
class SAESource:
    kind: str = "train"
    """train (this experiment's train stage), local (a folder), hub (a HF repo) or sae_lens (a registry release)."""
    path: str | None = None
    """local: a SAELens-format folder (cfg.json, sae_weights.safetensors)."""
    repo_id: str | None = None
    """hub: the repo id, e.g. andreuka18/deepseek-r1-distill-llama-8b-lmsys-openthoughts."""
    revision: str | None = None
    """hub: a commit sha (pin it), branch or tag; null: main."""
    subfolder: str | None = None
    """hub: the SAE's folder inside the repo, e.g. blocks.19.hook_resid_post; null: the repo root."""
    release: str | None = None
    """sae_lens: a release of SAELens' pretrained_saes.yaml (or a hub repo id SAELens can read)."""
    sae_id: str | None = None
    """sae_lens: the SAE id within the release."""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UserError(f"unknown sae_source.kind {self.kind!r}: use one of {', '.join(KINDS)}")
        needed = {"local": ("path",), "hub": ("repo_id",), "sae_lens": ("release", "sae_id")}.get(self.kind, ())
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise UserError(f"sae_source.kind={self.kind} needs " + " and ".join(f"sae_source.{m}" for m in missing))

    @classmethod
    def from_mapping(cls, values: dict) -> "SAESource":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown sae_source setting(s) {unknown}: allowed are {sorted(known)}")
        return cls(**values)

    def describe(self) -> str:
        return {"train": "the train stage's SAE", "local": f"the SAE folder {self.path}",
                "hub": f"hub SAE {self.repo_id}@{self.revision or 'main'}" + (f"/{self.subfolder}" if self.subfolder
                                                                             else ""),
                "sae_lens": f"SAELens release {self.release} / {self.sae_id}"}[self.kind]

    def is_paper_release(self) -> bool:
        """The authors' released SAE, whose feature ids the paper's tables and figures name."""
        if self.kind == "hub":
            return self.repo_id == PAPER_REPO_ID and (self.subfolder or "").strip("/") == PAPER_SUBFOLDER
        return self.kind == "sae_lens" and self.release == PAPER_REPO_ID and self.sae_id == PAPER_SUBFOLDER


class FetchedSAE(NamedTuple):
    path: Path
    """The SAELens-format folder to load."""
    fingerprint: str
    """Changes exactly when the SAE does: later stages rebuild when it changes."""
    provenance: dict
    """What it is, for artifacts and reports (kind, repo, resolved commit, ...)."""


def fetch(source: SAESource, cache: Path) -> FetchedSAE:
    """The SAE of a non-train source as a local folder (downloaded into the HF cache for the hub)."""
    if source.kind == "local":
        return fetch_local(source)
    if source.kind == "hub":
        return fetch_hub(source)
    if source.kind == "sae_lens":
        return fetch_sae_lens(source, cache)
    raise ValueError("the train stage's SAE is an artifact: read it through reasoning_sae.artifacts.run_sae")


def weights_digest(folder: Path) -> str:
    """sha256 of cfg.json and the weights: what defines the SAE, whatever the folder is called."""
    digest = hashlib.sha256()
    for name in (CFG, WEIGHTS):
        with (folder / name).open("rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def require_sae_folder(folder: Path, what: str, fix: str) -> Path:
    for name in (CFG, WEIGHTS):
        if not (folder / name).is_file():
            raise UserError(f"{what} has no {name} at {folder}: {fix}")
    return folder


def fetch_local(source: SAESource) -> FetchedSAE:
    folder = require_sae_folder(Path(source.path).expanduser(), f"sae_source.path={source.path}",
                                "point it at a SAELens-format folder (cfg.json, sae_weights.safetensors)")
    return FetchedSAE(folder, weights_digest(folder), {"kind": "local", "path": str(folder.resolve())})


def fetch_hub(source: SAESource) -> FetchedSAE:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    sub = (source.subfolder or "").strip("/")
    hint = f"hf download {source.repo_id}" + (f" --include '{sub}/*'" if sub else "") + (
        f" --revision {source.revision}" if source.revision else "")
    try:
        snapshot = Path(snapshot_download(source.repo_id, revision=source.revision,
                                          allow_patterns=[f"{sub}/*"] if sub else None))
    except GatedRepoError:
        raise UserError(f"{source.describe()} is gated: accept its terms on the hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise UserError(f"{source.describe()}: no such repo, or it is private (set HF_TOKEN): check "
                        f"sae_source.repo_id") from None
    except RevisionNotFoundError:
        raise UserError(f"{source.describe()}: no revision {source.revision!r}: check sae_source.revision") from None
    except LocalEntryNotFoundError:
        raise UserError(f"{source.describe()} is not in the HF cache ({hf_cache()}) and the hub cannot be reached "
                        f"(offline): download it where there is network ({hint}) or unset HF_HUB_OFFLINE") from None
    folder = require_sae_folder(snapshot / sub, source.describe(),
                                f"check sae_source.subfolder (or download it: {hint})")
    commit = snapshot.name  # snapshots/<commit sha>: the revision the hub resolved
    provenance = {"kind": "hub", "repo_id": source.repo_id, "revision": source.revision, "commit": commit,
                  "subfolder": sub or None}
    return FetchedSAE(folder, f"hub:{source.repo_id}@{commit}/{sub}", provenance)


def hf_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def fetch_sae_lens(source: SAESource, cache: Path) -> FetchedSAE:
    """A SAELens registry SAE, loaded by SAELens (download, conversion, norm folding) and saved in our format."""
    try:
        import sae_lens
        from sae_lens import SAE
    except ImportError:
        raise UserError("sae_source.kind=sae_lens needs SAELens: pip install sae-lens") from None
    from huggingface_hub.errors import LocalEntryNotFoundError

    folder = cache / "saes" / "sae_lens" / source.release.replace("/", "--") / source.sae_id.replace("/", "--")
    if not (folder / CFG).is_file():
        try:
            sae, cfg_dict, _ = SAE.from_pretrained_with_cfg_and_sparsity(source.release, source.sae_id, device="cpu")
        except ValueError as err:  # SAELens' message lists the valid ids
            raise UserError(f"{source.describe()}: {err}") from None
        except LocalEntryNotFoundError:
            raise UserError(f"{source.describe()} is not in the HF cache ({hf_cache()}) and the hub cannot be "
                            f"reached (offline): load it once with network, or unset HF_HUB_OFFLINE") from None
        if cfg_dict.get("normalize_activations") not in (None, "none"):
            raise UserError(f"{source.describe()} rescales its input at run time "
                            f"({cfg_dict['normalize_activations']}) and SAELens gives no factor to fold: "
                            f"use another SAE")
        save_sae_lens_sae(sae, folder)
    provenance = {"kind": "sae_lens", "release": source.release, "sae_id": source.sae_id,
                  "sae_lens_version": sae_lens.__version__}
    return FetchedSAE(folder, weights_digest(folder), provenance)


def save_sae_lens_sae(sae, folder: Path) -> None:
    with atomic_dir(folder) as tmp:
        sae.save_model(tmp)
        cfg = json.loads((tmp / CFG).read_text())
        cfg["normalize_activations"] = "none"  # SAELens folded the registry's scaling factor into the weights
        (tmp / CFG).write_text(json.dumps(cfg, indent=2, default=str))


def check_fits(folder: Path, mc, what: str) -> None:
    """The SAE reads a hook of this model at its width: checked from cfg.json and the model config, no weights."""
    from reasoning_sae.models.hooks import parse_hook
    from reasoning_sae.sae.config import SAEConfig

    try:
        cfg = SAEConfig.from_sae_lens(json.loads((folder / CFG).read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise UserError(f"{what} has an unreadable cfg.json ({err}): point sae_source at a SAELens-format SAE") from None
    hook = cfg.metadata.get("hook_name")
    if not hook:
        raise UserError(f"{what} names no hook_name in its cfg.json: add metadata.hook_name "
                        f"(e.g. blocks.19.hook_resid_post)")
    if mc.d_model is not None and cfg.d_in != mc.d_model:
        raise UserError(f"{what} reads d_in={cfg.d_in} but {mc.name} has d_model={mc.d_model}: use an SAE "
                        f"trained on this model (or set model.* to the SAE's model)")
    if mc.n_layers is not None:
        try:
            parse_hook(hook, mc.n_layers)
        except UserError as err:
            raise UserError(f"{what} reads {hook}, which {mc.name} does not have ({err})") from None


def check_feature_ids(ids, d_sae: int, setting: str) -> None:
    """Every id names a latent of the SAE (a UserError naming the setting otherwise)."""
    outside = sorted({int(i) for i in ids if not 0 <= int(i) < d_sae})
    if outside:
        raise UserError(f"{setting} names features {outside} but the SAE has {d_sae} (0..{d_sae - 1}): fix {setting} "
                        f"(feature ids belong to one SAE; the paper's are ids of its released SAE, sae_source="
                        f"paper_release)")
