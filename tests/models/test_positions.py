"""Which positions count: special tokens never, nor the first `sink_positions` of each sequence."""

import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.models import model_config
from reasoning_sae.models.positions import keep_mask


def test_keep_mask_drops_ignored_ids_and_leading_sink_positions():
    ids_BS = torch.tensor([[5, 1, 7, 8], [9, 9, 2, 3]])
    assert keep_mask(ids_BS, [1, 2]).tolist() == [[True, False, True, True], [True, True, False, True]]
    assert keep_mask(ids_BS, [1, 2], sink_positions=1).tolist() == [[False, False, True, True],
                                                                      [False, True, False, True]]
    assert keep_mask(ids_BS, (), sink_positions=2)[:, :2].any().item() is False


def test_sink_positions_is_on_by_default_and_checked():
    assert model_config("smollm2-135m-instruct").sink_positions == 1
    assert model_config("deepseek-ai/DeepSeek-R1-Distill-Llama-8B").sink_positions == 1
    assert model_config("smollm2", sink_positions=0).sink_positions == 0
    with pytest.raises(UserError, match="model.sink_positions=-1"):
        model_config("smollm2", sink_positions=-1)
