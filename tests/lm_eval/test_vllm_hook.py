import torch

from reasoning_sae.lm_eval.vllm_hook import VLLMSteeringHook, install
from reasoning_sae.steering import SteeringHook, steering_vectors
from tests.steering.test_hook import random_sae


def test_vllm_hook_steers_the_sum_of_hidden_states_and_residual_like_the_hf_hook():
    sae = random_sae(d_in=24, d_sae=40)
    vectors = steering_vectors(sae, [3, 9], gamma=[2.0, -1.0], mode="clamp")
    hidden, residual = torch.randn(11, 24), torch.randn(11, 24)  # vLLM flattens tokens: [num_tokens, d]
    new_hidden, same_residual = VLLMSteeringHook(vectors)(None, (), (hidden, residual))
    expected = SteeringHook(vectors, "all")(None, (), {}, (hidden + residual)[None])[0]
    assert same_residual is residual
    torch.testing.assert_close(new_hidden + residual, expected, atol=1e-5, rtol=1e-5)


def test_install_hooks_the_requested_layer_only():
    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(Pair() for _ in range(3))

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x * self.scale, torch.zeros_like(x)

    model = torch.nn.Module()
    model.model = Inner()
    sae = random_sae(d_in=24, d_sae=40)
    install(model, 1, steering_vectors(sae, 5, gamma=1.0, f_max=2.0))
    x = torch.randn(4, 24)
    out1, _ = model.model.layers[1](x)
    torch.testing.assert_close(out1, x + 2.0 * sae.W_dec[5])
    assert torch.equal(model.model.layers[0](x)[0], x)
