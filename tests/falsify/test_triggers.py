import numpy as np
import torch

from reasoning_sae.falsify.triggers import distinct, from_activations, from_contexts


def test_distinct_keeps_the_first_k_in_order():
    assert distinct([5, 3, 5, 7, 3, 9], 3) == [5, 3, 7]
    assert distinct([4, 4], 3) == [4]


def test_triggers_from_contexts_are_the_token_ids_at_the_top_activations():
    tokens_NS = np.array([[10, 11, 12, 13], [20, 21, 22, 23]])
    contexts = [{"sequence": 0, "position": 1, "activation": 2.0}, {"sequence": 1, "position": 3, "activation": 5.0},
                {"sequence": 0, "position": 2, "activation": 3.0}, {"sequence": 1, "position": 3, "activation": 1.0}]
    assert from_contexts(contexts, tokens_NS, 2) == [23, 12]
    assert from_contexts(contexts, tokens_NS, 5) == [23, 12, 11]


def test_triggers_from_activations_rank_tokens_by_activation_and_skip_silent_features():
    ids_N = torch.tensor([6, 8, 9, 7, 5, 7])
    feats_NG = torch.tensor([[0.5, 0.0], [0.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
    assert from_activations(feats_NG, ids_N, 2) == [[7, 9], []]
    assert from_activations(feats_NG, ids_N, 5)[0] == [7, 9, 6, 5]  # ties (0.5): the earlier position first
