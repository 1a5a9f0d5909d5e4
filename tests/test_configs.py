"""Every primary config composes with every experiment and every option of its groups."""

import pytest

from reasoning_sae import config_check
from reasoning_sae.data.sources import SourceConfig
from reasoning_sae.models.config import conf_dir, model_config
from reasoning_sae.stages import OPTIONAL, STAGES

PRIMARY = [*STAGES, *OPTIONAL, "reproduce"]  # every stage has conf/<stage>.yaml
EXPERIMENTS = sorted(p.stem for p in conf_dir().glob("experiment/*.yaml"))


@pytest.mark.parametrize("stage", PRIMARY)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_primary_configs_compose_with_every_experiment(compose, stage, experiment):
    cfg = compose(stage, (f"experiment={experiment}",))
    assert cfg.stage == stage and cfg.experiment_name == experiment
    model_config(dict(cfg.model))
    config_check.check(cfg)  # every setting of every shipped config has the type and range the stages accept
    for source in cfg.data.sources.values():
        SourceConfig(**source)


@pytest.mark.parametrize("group", ["model", "data", "steering", "benchmark", "score", "sae"])
def test_every_group_option_composes(compose, group):
    for option in sorted(p.stem for p in conf_dir().glob(f"{group}/*.yaml")):
        cfg = compose("corpus", (f"{group}={option}",))
        assert cfg[group]
        config_check.check(cfg)


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
