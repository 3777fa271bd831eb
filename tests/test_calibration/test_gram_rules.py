"""Rules as weights over the Gram matrix: ``weights(G G^T) @ G`` is the rule, for every rule."""

import pytest
import torch

from fuller.calibration import FullerInter, Mean, Sum, TorchJDRule
from fuller.calibration.step import gram_diagnostics, gram_matrix

GRAMIAN = ['UPGrad', 'MGDA', 'PCGrad', 'CAGrad', 'IMTLG', 'DualProj', 'AlignedMTL']


def _kwargs(name: str) -> dict:
    return dict(c=0.5) if name == 'CAGrad' else {}


def _reference_fuller(matrix: torch.Tensor) -> torch.Tensor:
    """FULLER's rule written out on the vectors (the previous implementation)."""
    norms = matrix.norm(dim=1, keepdim=True)
    g = matrix * (norms.mean() / norms)
    gram = g @ g.T
    coef = (gram / gram.diagonal()[None, :]).clamp_max(0.0)
    coef.fill_diagonal_(0.0)
    return (g - coef @ g).sum(0)


def _random_tasks(m: int, seed: int, correlated: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 64, generator=g, dtype=torch.float64)
    rows = torch.randn(m, 64, generator=g, dtype=torch.float64) + (2.0 * base if correlated else 0.0)
    return rows * torch.logspace(-2, 1, m, dtype=torch.float64)[:, None]  # very different norms


@pytest.mark.parametrize('m', [2, 3, 5])
@pytest.mark.parametrize('seed', range(4))
def test_fuller_weights_on_the_gram_matrix_reproduce_the_vector_rule(m, seed):
    G = _random_tasks(m, seed, correlated=seed % 2 == 1)
    rule = FullerInter()
    w = rule.weights(G @ G.T)
    torch.testing.assert_close(w @ G, _reference_fuller(G), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(rule(G), w @ G)


@pytest.mark.parametrize('m', [2, 3, 5])
@pytest.mark.parametrize('name', GRAMIAN)
def test_torchjd_rules_through_their_gramian_weighting_equal_the_aggregator(m, name):
    import torchjd.aggregation as agg

    G = _random_tasks(m, 7, correlated=True).float()
    rule = TorchJDRule(name, **_kwargs(name))
    assert not rule.needs_matrix
    w = rule.weights(gram_matrix(G))
    expected = getattr(agg, name)(**_kwargs(name))(G)
    torch.testing.assert_close((w.float() @ G), expected, rtol=1e-4, atol=1e-5)
    combined, w2 = rule.combine_with_weights(G)
    torch.testing.assert_close(combined, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w2, w)


def test_matrix_rules_keep_a_documented_matrix_path():
    import torchjd.aggregation as agg

    G = _random_tasks(3, 3).float()
    nash = TorchJDRule('NashMTL', n_tasks=3)
    assert nash.needs_matrix
    combined, w = nash.combine_with_weights(G)
    assert w is not None and w.shape == (3,)
    torch.testing.assert_close(combined, w.float() @ G)
    drop = TorchJDRule('GradDrop')
    torch.manual_seed(0)
    out, w = drop.combine_with_weights(G)
    torch.manual_seed(0)
    torch.testing.assert_close(out, agg.GradDrop()(G))
    assert w is None  # not a weighting: no weights are reported


@pytest.mark.parametrize('m', [2, 3, 5])
def test_sum_and_mean(m):
    G = _random_tasks(m, 1)
    torch.testing.assert_close(Sum()(G), G.sum(0))
    torch.testing.assert_close(Mean()(G), G.mean(0))
    torch.testing.assert_close(Sum().weights(G @ G.T), torch.ones(m, dtype=torch.float64))


def test_repr_is_faithful():
    assert repr(FullerInter(normalize='max', project=False)) == \
        "FullerInter(normalize='max', project=False, rel_floor=1e-06)"
    assert repr(TorchJDRule('CAGrad', c=0.4)) == "TorchJDRule('CAGrad', c=0.4)"


def test_vanishing_or_zero_task_is_neither_blown_up_nor_halves_the_other():
    g = torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64)
    for tiny in (1e-13, 0.0):
        G = torch.stack([g, tiny * torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)])
        w = FullerInter().weights(G @ G.T)
        assert w[1] == 0.0
        torch.testing.assert_close(FullerInter()(G), g)  # the other task's update as it is
    # a small but real task (1e-3 of the other, as the map task early in training) is amplified
    G = torch.stack([g, 1e-3 * torch.tensor([0.0, 5.0, 0.0], dtype=torch.float64)])
    out = FullerInter(project=False)(G)
    r = (5.0 + 0.005) / 2  # both scaled to the mean norm
    torch.testing.assert_close(out, g * r / 5.0 + torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) * r)
    all_zero = torch.zeros(2, 3, dtype=torch.float64)
    torch.testing.assert_close(FullerInter()(all_zero), torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize('scale', [1e-30, 1e-8, 1.0, 1e12, 1e30])
def test_fuller_rule_is_scale_free(scale):
    G = _random_tasks(3, 5, correlated=True)
    torch.testing.assert_close(FullerInter()(scale * G), scale * FullerInter()(G), rtol=1e-9, atol=0)
    torch.testing.assert_close(FullerInter().weights(scale**2 * (G @ G.T)), FullerInter().weights(G @ G.T))


def test_half_precision_task_gradients_get_an_fp32_gram_matrix():
    G32 = 300 * torch.randn(2, 4096)
    G16 = G32.half()
    assert not torch.isfinite(G16 @ G16.T).all()  # the fp16 Gram matrix overflows
    K = gram_matrix(G16)
    assert torch.isfinite(K).all()
    torch.testing.assert_close(K, gram_matrix(G16.float()))
    w = FullerInter().weights(K)
    torch.testing.assert_close(w @ G16.double(), FullerInter()(G16.double()), rtol=1e-4, atol=1e-3)


def test_two_task_result_never_conflicts():
    for seed in range(50):
        G = _random_tasks(2, seed, correlated=seed % 2 == 0)
        g = FullerInter()(G)
        assert float(G[0] @ g) >= -1e-9 and float(G[1] @ g) >= -1e-9


def test_diagnostics_come_from_the_gram_matrix():
    G = _random_tasks(2, 2)
    w = FullerInter().weights(G @ G.T)
    d = gram_diagnostics(G @ G.T, w, ['det', 'map'])
    assert d['calib/grad_norm_det'] == pytest.approx(float(G[0].norm()))
    assert d['calib/cos'] == pytest.approx(float(torch.nn.functional.cosine_similarity(G[0], G[1], dim=0)))
    assert d['calib/grad_norm_combined'] == pytest.approx(float((w @ G).norm()))
    assert d['calib/weight_map'] == pytest.approx(float(w[1]))
