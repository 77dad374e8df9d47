"""Patch geometry and the synapses, against plain loops."""

import pytest
import torch

from lifnet import ConfigError
from lifnet.layers import (
    DenseSynapse,
    PatchEncoding,
    TimeIndexedIntegratedSynapse,
    TimeIndexedSynapse,
    patch_grid,
)


def _loop_patches(image, k, s):
    h, w = image.shape
    out = []
    i = 0
    while i + k <= h:
        j = 0
        while j + k <= w:
            out.append(image[i:i + k, j:j + k].reshape(-1))
            j += s
        i += s
    return torch.stack(out)


@pytest.mark.parametrize("h, w, k, s", [(28, 28, 5, 1), (28, 28, 5, 2), (28, 28, 5, 3),
                                        (13, 17, 3, 2), (9, 9, 9, 1), (10, 7, 4, 3),
                                        (31, 29, 6, 5)])
def test_patch_count_and_content_match_a_loop(h, w, k, s):
    gh, gw = patch_grid(h, w, k, s)
    assert (gh, gw) == ((h - k) // s + 1, (w - k) // s + 1)
    enc = PatchEncoding((h, w), k, s)
    image = torch.rand(h, w)
    got = enc.patches(image[None])[0]
    assert got.shape == (gh * gw, k * k)
    assert torch.equal(got, _loop_patches(image, k, s))


def test_notebook_geometry_has_576_patches_not_529():
    assert patch_grid(28, 28, 5, 1) == (24, 24)


def test_patch_larger_than_image_is_refused():
    with pytest.raises(ConfigError, match=r"patch_size = 30 .*<= the image's smaller side, 28"):
        patch_grid(28, 28, 30, 1)


def test_patch_current_is_gain_times_weighted_sum_per_patch_and_channel():
    torch.manual_seed(0)
    enc = PatchEncoding((8, 9), 3, 2, channels=2, gain=7.5)
    with torch.no_grad():
        enc.bias.normal_()
    images = torch.rand(4, 8, 9)
    current = enc(images)
    assert current.shape == (4, enc.num_patches * 2)
    for b in range(4):
        patches = _loop_patches(images[b], 3, 2)
        for p in range(enc.num_patches):
            for c in range(2):
                want = 7.5 * (patches[p] @ enc.weight[p, c] + enc.bias[p, c])
                assert current[b, p * 2 + c].item() == pytest.approx(want.item(), rel=1e-5)


def test_synapses_against_loops():
    torch.manual_seed(1)
    t, b, n, k = 6, 3, 5, 4
    spikes = (torch.rand(t, b, n) < 0.4).float()
    dense = DenseSynapse(n, k)
    indexed = TimeIndexedSynapse(n, k, t)
    integrated = TimeIndexedIntegratedSynapse(n, k, t)
    integrated.load_state_dict(indexed.state_dict())
    d, ti, tii = dense(spikes), indexed(spikes), integrated(spikes)
    assert ti.shape == (t, b, k) and tii.shape == (b, k)
    for s in range(t):
        for i in range(b):
            for j in range(k):
                assert d[s, i, j].item() == pytest.approx(
                    (dense.weight[j] @ spikes[s, i] + dense.bias[j]).item(), abs=1e-5)
                assert ti[s, i, j].item() == pytest.approx(
                    (indexed.weight[j, :, s] @ spikes[s, i]).item(), abs=1e-5)
    assert torch.allclose(tii, ti.sum(0), atol=1e-5)
