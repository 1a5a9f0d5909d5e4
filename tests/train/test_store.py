import numpy as np
import pytest
import torch

from reasoning_sae.train.store import CacheSource, LMSource, MixingBuffer, write_cache


class CountingSource:
    """Chunks of distinct vectors in a fixed order, so served batches can be compared exactly."""

    def __init__(self, chunk: int = 7, d: int = 3):
        self.cursor, self.epoch, self.chunk, self.d = 0, 0, chunk, d

    def read(self):
        start = self.cursor
        self.cursor += self.chunk
        return torch.arange(start * self.d, self.cursor * self.d, dtype=torch.float32).reshape(self.chunk, self.d)

    def state_dict(self):
        return {"cursor": self.cursor, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.cursor, self.epoch = state["cursor"], state["epoch"]


def _serve(buffer, n, prefetch=True):
    """Serve n batches the way Lightning does: one batch fetched ahead of the one being trained on."""
    batches, ahead = [], buffer.next_batch()
    for _ in range(n):
        current, ahead = ahead, (buffer.next_batch() if prefetch else None)
        batches.append(current)
        buffer.consumed()
    return batches, ahead


def test_buffer_serves_every_vector_once_per_fill_in_shuffled_order():
    buffer = MixingBuffer(CountingSource(), batch_size=4, n_batches=4, seed=0)
    first = torch.cat([buffer.next_batch() for _ in range(2)])
    assert len(first) == 8 and len(torch.unique(first[:, 0])) == 8
    assert not torch.equal(first[:, 0], torch.sort(first[:, 0]).values)


@pytest.mark.parametrize("stop_after", [1, 2, 3, 5, 8])
def test_state_after_prefetch_resumes_exactly(stop_after):
    reference = MixingBuffer(CountingSource(), batch_size=4, n_batches=4, seed=3)
    expected, _ = _serve(reference, 12)
    interrupted = MixingBuffer(CountingSource(), batch_size=4, n_batches=4, seed=3)
    served, _ahead = _serve(interrupted, stop_after)
    state = interrupted.state_dict()
    resumed = MixingBuffer(CountingSource(), batch_size=4, n_batches=4, seed=999)
    resumed.load_state_dict(state, "cpu")
    rest, _ = _serve(resumed, 12 - stop_after)
    for got, want in zip(served + rest, expected, strict=True):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_lm_source_drops_special_tokens_and_cycles(tiny_llama_dir):
    from reasoning_sae import load_lm

    lm = load_lm(str(tiny_llama_dir), device="cpu")
    ids = np.array([[1, 50, 60, 2], [70, 0, 80, 90], [5, 6, 7, 8]])
    source = LMSource(lm, ids, "blocks.1.hook_resid_post", ignore_token_ids=[0, 1, 2], batch_sequences=2)
    first, second = source.read(), source.read()
    assert first.shape == (5, 32) and second.shape == (4, 32)
    hidden = lm.model(torch.tensor(ids[:2]), output_hidden_states=True).hidden_states[2]
    keep = ~torch.isin(torch.tensor(ids[:2]), torch.tensor([0, 1, 2]))
    torch.testing.assert_close(first, hidden[keep], atol=1e-5, rtol=0)
    torch.testing.assert_close(source.read(), first, atol=0, rtol=0)
    assert source.epoch == 1


def test_cache_source_replays_the_lm_source(tiny_llama_dir, tmp_path):
    from reasoning_sae import load_lm

    lm = load_lm(str(tiny_llama_dir), device="cpu")
    ids = np.random.default_rng(0).integers(3, 1000, size=(5, 6))
    source = LMSource(lm, ids, "blocks.0.hook_resid_post", ignore_token_ids=[0, 1, 2], batch_sequences=2)
    path = write_cache(source, tmp_path / "acts.npy")
    cached = CacheSource(path, chunk=12)
    live = torch.cat([source.read() for _ in range(3)])
    torch.testing.assert_close(torch.cat([cached.read() for _ in range(3)]), live, atol=0, rtol=0)
