"""`sae_steered_vllm`: lm-eval's vLLM model with the same rank-1 steering, for paper-scale (32k-token) generation.

The update is `reasoning_sae.steering.SteeringVectors.update`, the function the HF hook uses (tested there). vLLM's
`LlamaDecoderLayer` returns `(hidden_states, residual)` with resid_post = hidden_states + residual, so the hook
steers that sum by adding the update to `hidden_states` (the released code read `output[0]` alone, i.e. the
MLP output: DIGEST 5.3). The hook is installed in every worker with `LLM.apply_model` (the function is sent with
cloudpickle); vLLM runs eager (no CUDA graphs or torch.compile, which would bypass Python hooks) with prefix caching
off (a cached prefix would skip the steered prefill).

UNTESTED here: vLLM needs a GPU and its own torch build, neither of which this project's CI machine has."""

from lm_eval.api.registry import register_model
from lm_eval.models.vllm_causallms import VLLM

from reasoning_sae.errors import UserError
from reasoning_sae.lm_eval.model import read_ban, read_f_max, split_list
from reasoning_sae.models.hooks import parse_hook
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.lm_eval.vllm_hook import install
from reasoning_sae.steering import steering_vectors


@register_model("sae_steered_vllm")
class SteeredVLLM(VLLM):
    """VLLM with SAE features steered at every position (the released code's setting) and optional word bans."""

    def __init__(self, pretrained: str, sae=None, features=None, gamma=2.0, mode="add", positions="all",
                 f_max=None, ban=None, ban_scope="all", **kwargs):
        if positions != "all":
            raise UserError("engine=vllm steers every position (vLLM flattens the batch): set steering.positions=all "
                            "or use engine=hf")
        if ban and ban_scope != "all":
            raise UserError("engine=vllm bans words in the whole output (SamplingParams.bad_words): set "
                            "benchmark.word_ban.scope=all or use engine=hf")
        # Python hooks need eager execution: no CUDA graphs and no torch.compile (compilation level 0).
        kwargs.update(enforce_eager=True, enable_prefix_caching=False, compilation_config=0)
        super().__init__(pretrained=pretrained, **kwargs)
        self.bad_words = read_ban(ban)
        features = split_list(features, int)
        if sae is not None:
            loaded = SparseAutoencoder.load(sae) if not isinstance(sae, SparseAutoencoder) else sae
            gammas = split_list(gamma, float)
            vectors = steering_vectors(loaded, features, gammas if len(gammas) > 1 else gammas[0], mode,
                                       read_f_max(f_max, features))
            point = parse_hook(loaded.cfg.hook_name, self._config.num_hidden_layers)
            if point.kind != "hook_resid_post":
                raise UserError(f"steering reads blocks.L.hook_resid_post, not {point.name}")
            layer = point.layer
            self.model.apply_model(lambda model: install(model, layer, vectors))

    def _model_generate(self, requests, generate=False, sampling_params=None):
        if generate and sampling_params is not None and self.bad_words:
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params]
            for p in params:
                p.bad_words = list(self.bad_words)
        return super()._model_generate(requests, generate=generate, sampling_params=sampling_params)
