"""Every config under conf/ composes and passes the checks the stages run on it: every primary config with every
experiment, and every option of every group, each read by the typed config it feeds (TrainConfig, SAESource,
SourceConfig, ...); the Lightning trainer and logger of each trainer/ and logger/ option and the launcher of each
hydra/launcher/ option are instantiated (as lightning-hydra-template's tests/test_configs.py does)."""

import os
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from reasoning_sae import UserError, config_check
from reasoning_sae.data.sources import SourceConfig
from reasoning_sae.evaluate.verifier import VerifierConfig
from reasoning_sae.models.config import conf_dir, model_config
from reasoning_sae.sae.source import SAESource
from reasoning_sae.stages import OPTIONAL, STAGES
from reasoning_sae.train.config import TrainConfig
from tests.helpers import DDP

PRIMARY = [*STAGES, *OPTIONAL, "reproduce"]  # every stage has conf/<stage>.yaml
EXPERIMENTS = sorted(p.stem for p in conf_dir().glob("experiment/*.yaml"))
GROUPS = ["model", "data", "sae", "sae_source", "score", "steering", "benchmark", "vocab", "interpret", "autointerp",
          "diff", "falsify", "figures", "trainer", "logger", "paths", "experiment", "hydra/launcher"]
# the primary config that reads each group most (every primary config holds every group)
STAGE_OF = {"data": "corpus", "vocab": "vocab", "sae": "train", "trainer": "train", "logger": "train", "score": "score",
            "interpret": "interpret", "autointerp": "autointerp", "steering": "evaluate", "benchmark": "evaluate",
            "diff": "diff", "falsify": "falsify", "figures": "figures", "hydra/launcher": "train"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


GROUP_OPTIONS = [(group, option) for group in GROUPS if group != "hydra/launcher" for option in options(group)]


# what a user must add to an option (its `???` values: OmegaConf's merge keeps the null of sae_source/train.yaml
# under them, so SAESource itself names the missing setting)
REQUIRED = {("sae_source", "hub"): ("sae_source.repo_id=org/name",),
            ("sae_source", "local"): ("sae_source.path=/data/sae",),
            ("sae_source", "sae_lens"): ("sae_source.release=org/release", "sae_source.sae_id=blocks.1")}


def check_groups(cfg: DictConfig) -> None:
    """What the stages check on a config before they read anything, and the typed configs each group feeds."""
    from reasoning_sae.stages import autointerp, diff, train

    assert not OmegaConf.missing_keys(cfg)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # every interpolation resolves (paths, ...)
    config_check.check(cfg)  # every setting has the type and range the stages accept
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    for source in cfg.data.sources.values():
        SourceConfig(**source)
    assert isinstance(train.validate(cfg), TrainConfig)  # sae/, model.layer, logger._target_
    SAESource.from_mapping(OmegaConf.to_container(cfg.sae_source, resolve=True))
    VerifierConfig.from_mapping(OmegaConf.to_container(cfg.benchmark.verifier, resolve=True))
    autointerp.check_config(cfg.autointerp)
    diff.check(cfg, mc.layer)


def test_every_config_group_under_conf_is_tested():
    on_disk = {str(p.parent.relative_to(conf_dir())) for p in conf_dir().rglob("*.yaml") if p.parent != conf_dir()}
    assert on_disk == set(GROUPS)
    assert {p.stem for p in conf_dir().glob("*.yaml")} == {*PRIMARY, "config"}


@pytest.mark.parametrize("stage", PRIMARY)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_primary_configs_compose_with_every_experiment(compose, stage, experiment):
    cfg = compose(stage, (f"experiment={experiment}",))
    assert cfg.stage == stage and cfg.experiment_name == experiment
    check_groups(cfg)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_option_of_every_group_composes_and_checks(compose, group, option):
    stage = STAGE_OF.get(group, "corpus")
    required = REQUIRED.get((group, option), ())
    if required:
        bare = compose(stage, (f"{group}={option}",))
        with pytest.raises(UserError, match=f"^sae_source.kind={option} needs sae_source"):
            SAESource.from_mapping(OmegaConf.to_container(bare.sae_source, resolve=True))
    cfg = compose(stage, (f"{group}={option}", *required))
    assert cfg.stage == stage
    if group == "experiment":  # @package _global_: it sets other groups' values
        assert cfg.experiment_name == option
    elif (group, option) != ("logger", "none"):  # no logger: an empty mapping, without a _target_
        assert len(cfg[group]) > 0
    check_groups(cfg)


@pytest.fixture
def process_state():
    """Lightning's Trainer sets process-wide state (deterministic algorithms, env vars): put it back afterwards."""
    environ, deterministic = dict(os.environ), torch.are_deterministic_algorithms_enabled()
    yield
    os.environ.clear()
    os.environ.update(environ)
    torch.use_deterministic_algorithms(deterministic)


# Lightning notices this machine's SLURM tools; the trainers here are not meant for SLURM
no_srun_hint = pytest.mark.filterwarnings("ignore:The `srun` command is available")


def train_steps(cfg: DictConfig) -> int:
    return TrainConfig.from_mapping(OmegaConf.to_container(cfg.sae, resolve=True)).total_steps


def _trainer(compose, tmp_path, *overrides: str):
    """The Trainer the train stage builds (stages.train.make_trainer) from the composed config."""
    from reasoning_sae.stages import train

    cfg = compose("train", overrides)
    return cfg, train.make_trainer(cfg, train.validate(cfg), tmp_path / "work", logger=False)


@no_srun_hint
@pytest.mark.parametrize("option", options("trainer"))
def test_every_trainer_option_instantiates(compose, tmp_path, process_state, option):
    needs_gpu = compose("train", (f"trainer={option}",)).trainer.accelerator == "gpu"
    if needs_gpu and not torch.cuda.is_available():
        pytest.skip(f"trainer={option} runs on GPUs and this machine has none (trainer=ddp is instantiated on the "
                    "CPU below)")
    cfg, trainer = _trainer(compose, tmp_path, f"trainer={option}")
    assert trainer.max_steps == train_steps(cfg) and trainer.logger is None
    assert type(trainer.accelerator).__name__ == ("CUDAAccelerator" if needs_gpu else "CPUAccelerator")
    assert trainer.precision == cfg.trainer.precision
    if cfg.trainer.strategy == "ddp":
        assert type(trainer.strategy).__name__ == "DDPStrategy"


@no_srun_hint
def test_the_ddp_trainer_instantiates_on_the_cpu(compose, tmp_path, process_state):
    cfg, trainer = _trainer(compose, tmp_path, *DDP)  # what tests/train/test_ddp.py runs: gloo, 2 processes
    assert type(trainer.strategy).__name__ == "DDPStrategy" and trainer.num_devices == 2
    assert type(trainer.accelerator).__name__ == "CPUAccelerator" and trainer.max_steps == train_steps(cfg)


@pytest.mark.parametrize("option", options("logger"))
@pytest.mark.parametrize("wandb_mode", [None, "disabled"])
def test_every_logger_option_instantiates(compose, tmp_path, monkeypatch, option, wandb_mode):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from reasoning_sae.stages import train

    if wandb_mode is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", wandb_mode)
    cfg = compose("train", (f"logger={option}",))
    logger = train.make_logger(cfg, tmp_path / "work", "test-run")
    expected = {"none": bool, "csv": CSVLogger, "wandb": WandbLogger}[option]
    assert isinstance(logger, expected) and (logger is not False) == (option != "none")
    if isinstance(logger, CSVLogger):
        assert Path(logger.log_dir) == tmp_path / "work" / "csv"
    if isinstance(logger, WandbLogger):  # offline unless WANDB_MODE says otherwise; the run's name and config added
        init = logger._wandb_init  # what wandb.init gets
        assert logger.name == cfg.logger.project == "reasoning-sae" and init["name"] == "test-run"
        assert init["mode"] == (wandb_mode or "offline") and init["config"]["stage"] == "train"
        assert Path(logger.save_dir) == tmp_path / "artifacts" / "demo" / "logs" and Path(logger.save_dir).is_dir()


def test_a_logger_target_that_does_not_import_is_one_line(compose):
    from reasoning_sae.stages import train

    cfg = compose("train", ("logger=csv", "logger._target_=lightning.pytorch.loggers.NoSuchLogger"))
    with pytest.raises(UserError, match=r"^logger._target_='lightning.pytorch.loggers.NoSuchLogger' cannot be "
                                        r"imported .*: give a Lightning logger class"):
        train.validate(cfg)


def _hydra_config(stage: str, overrides: tuple[str, ...], tmp_path) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name=stage, overrides=[f"paths.artifacts={tmp_path}", *overrides],
                             return_hydra_config=True)


@pytest.mark.parametrize("option", ["basic", "submitit_local", *options("hydra/launcher")])
def test_every_launcher_instantiates(tmp_path, option):
    """As Hydra instantiates a multirun's launcher: Hydra's basic one, submitit's local one, and ours in conf/."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext

    cfg = _hydra_config("train", (f"hydra/launcher={option}",), tmp_path)
    context = HydraContext(config_loader=ConfigLoaderImpl(create_config_search_path(str(conf_dir()))),
                           callbacks=Callbacks(cfg))
    launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=lambda _: None, config=cfg)
    expected = {"basic": "BasicLauncher", "submitit_local": "LocalLauncher", "slurm": "SlurmLauncher"}[option]
    assert type(launcher).__name__ == expected
    if option == "slurm":
        params = launcher.params
        assert (params["gpus_per_node"], params["tasks_per_node"], params["timeout_min"]) == (1, 1, 2880)
        assert params["submitit_folder"].startswith(str(tmp_path / "demo" / "multirun" / "train"))


def test_paper_experiment_is_the_paper_setup(compose):
    cfg = compose("corpus", ("experiment=paper",))
    assert cfg.model.name == "deepseek-ai/DeepSeek-R1-Distill-Llama-8B" and cfg.model.layer == 19
    assert cfg.data.context_size == 1024 and cfg.data.training_tokens == 1_000_000_000
    assert cfg.data.sources.reasoning.path == "open-thoughts/OpenThoughts-114k"
    assert cfg.data.sources.reasoning.name == "metadata" and cfg.data.sources.chat.path == "lmsys/lmsys-chat-1m"
    released = compose("corpus", ("experiment=paper", "data=released_code"))
    assert released.data.training_tokens == 819_200_000 and released.data.scoring.sequences == 4096


def test_paper_sae_is_65536_latents_on_layer_19(compose):
    from reasoning_sae.train.config import TrainConfig

    cfg = compose("train", ("experiment=paper",))
    tc = TrainConfig.from_mapping(dict(cfg.sae))
    assert tc.expansion_factor * cfg.model.d_model == 65536 and cfg.model.layer == 19
    assert (tc.init, tc.l1_coefficient, tc.lr, tc.batch_size_tokens, tc.total_steps) == ("paper", 5.0, 5e-5, 4096, 244_140)
    released = TrainConfig.from_mapping(dict(compose("train", ("experiment=paper", "sae=released_code")).sae))
    assert released.training_tokens == 819_200_000 and released.total_steps == 200_000  # the YAML's "200k steps"
    assert cfg.score.top_k == 200 and compose("score", ("experiment=paper", "score=paper_v2_quantile")).score.top_k is None
    assert not cfg.data.sources.chat.final_eos
    assert (tc.l1_warm_up_fraction, tc.lr_decay_fraction, tc.grad_clip) == (0.05, 0.2, 1.0)
    assert compose("train", ("experiment=paper", "sae=fixed")).sae.init == "fixed"
    assert compose("train", ("trainer=ddp",)).trainer.strategy == "ddp"


def test_paper_released_steers_the_paper_ids_on_the_authors_sae(compose):
    cfg = compose("reproduce", ("experiment=paper_released",))
    assert cfg.experiment_name == "paper_released" and cfg.model.name == "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"
    assert (cfg.sae_source.kind, cfg.sae_source.repo_id, cfg.sae_source.subfolder) == (
        "hub", "andreuka18/deepseek-r1-distill-llama-8b-lmsys-openthoughts", "blocks.19.hook_resid_post")
    assert list(cfg.steering.features) == [3942, 4395, 16441, 16778, 25953, 46691, 61104]
    assert set(cfg.steering.features) <= set(cfg.interpret.extra_features)
    assert set(cfg.skip_stages) == {"train", "diff"} and not cfg.data.train_mix and cfg.benchmark.engine == "vllm"
    panels = [f for panel in cfg.figures.interfaces.values() for f in panel]
    assert set(panels) <= set(cfg.interpret.extra_features) and len(panels) == 20


def test_paper_evaluation_is_table_1(compose):
    cfg = compose("evaluate", ("experiment=paper",))
    assert list(cfg.benchmark.tasks) == ["aime24_nofigures", "math500", "gpqa_diamond_openai"]
    assert cfg.benchmark.repeats == 4 and cfg.benchmark.max_gen_toks == 32768 and cfg.benchmark.engine == "vllm"
    assert cfg.steering.features == "top" and cfg.steering.top_n == 7 and list(cfg.steering.gammas) == [2.0]
    assert cfg.sae_source.kind == "train" and cfg.figures.paper
    assert len(cfg.benchmark.word_ban.seeds) == 10  # Table 2: random words, mean of 10
