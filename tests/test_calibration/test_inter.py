import itertools

import pytest
import torch

from fuller.calibration import FullerInter, Mean, Sum, build_inter_rule

N_MATRICES = 300


def random_matrices(m: int, n: int = 40, spread: float = 2.0):
    """Gaussian task gradients whose norms differ by factors up to about exp(3 * spread)."""
    g = torch.Generator().manual_seed(1234 + m)
    for _ in range(N_MATRICES):
        scales = torch.exp(torch.randn(m, 1, generator=g, dtype=torch.float64) * spread)
        yield torch.randn(m, n, generator=g, dtype=torch.float64) * scales


def reference_fuller_two(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """Independent computation of FullerInter for m = 2 with explicit formulas."""
    r = (g1.norm() + g2.norm()) / 2
    a, b = g1 * r / g1.norm(), g2 * r / g2.norm()
    dot = torch.dot(a, b)
    if dot < 0:
        a_p = a - dot / torch.dot(b, b) * b
        b_p = b - dot / torch.dot(a, a) * a
        return a_p + b_p
    return a + b


def test_fuller_matches_reference_m2():
    rule = FullerInter()
    for G in random_matrices(2):
        torch.testing.assert_close(rule(G), reference_fuller_two(G[0], G[1]), rtol=1e-9, atol=1e-9)


def test_fuller_never_conflicts_m2():
    rule = FullerInter()
    conflicts = 0
    for G in random_matrices(2):
        conflicts += int(torch.dot(G[0], G[1]) < 0)
        g = rule(G)
        assert (G @ g >= -1e-9 * G.norm(dim=1) * g.norm()).all()
    assert conflicts > N_MATRICES // 4  # the property was exercised on conflicting pairs


@pytest.mark.parametrize('m', [2, 3, 4])
def test_fuller_permutation_invariant(m):
    rule = FullerInter()
    for G in itertools.islice(random_matrices(m), 50):
        out = rule(G)
        for perm in itertools.permutations(range(m)):
            torch.testing.assert_close(rule(G[list(perm)]), out, rtol=1e-9, atol=1e-9)


def test_single_task_and_identical_tasks_pass_through():
    g = torch.randn(1, 30, dtype=torch.float64)
    for rule in (FullerInter(), Sum(), Mean(), FullerInter(normalize=None)):
        torch.testing.assert_close(rule(g), g[0])
    G = g.repeat(3, 1)
    torch.testing.assert_close(FullerInter()(G), 3 * g[0])  # agreeing, equal-norm tasks: the naive sum
    torch.testing.assert_close(Sum()(G), 3 * g[0])
    torch.testing.assert_close(Mean()(G), g[0])


def test_fuller_equalises_task_magnitudes():
    G = torch.tensor([[100.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # orthogonal, very unequal
    g = FullerInter()(G)
    torch.testing.assert_close(g, torch.tensor([50.5, 50.5], dtype=torch.float64))


def test_linear_under_common_scaling():
    rule = FullerInter()
    for G in itertools.islice(random_matrices(3), 50):
        torch.testing.assert_close(rule(3.5 * G), 3.5 * rule(G), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize('name', ['UPGrad', 'MGDA', 'PCGrad', 'IMTLG', 'AlignedMTL', 'CAGrad', 'NashMTL'])
def test_torchjd_rules_build_and_combine(name):
    kwargs = {'CAGrad': dict(c=0.5), 'NashMTL': dict(n_tasks=2)}.get(name, {})
    rule = build_inter_rule(dict(type=name, **kwargs))
    G = torch.randn(2, 25)
    g = rule(G)
    assert g.shape == (25,) and torch.isfinite(g).all()
    assert name in repr(rule)


def test_upgrad_non_conflicting():
    # torchjd regularises its quadratic program (reg_eps), so the promise holds up to that
    # regularisation: tested on moderately conditioned matrices (norm ratios up to ~e^1.5).
    rule = build_inter_rule(dict(type='UPGrad'))
    for G in itertools.islice(random_matrices(3, spread=0.5), 50):
        g = rule(G)
        assert (G @ g >= -1e-3 * G.norm(dim=1) * g.norm()).all()


def test_bad_configs_name_the_key():
    with pytest.raises(KeyError, match='type'):
        build_inter_rule(dict(normalize='mean'))
    with pytest.raises(ValueError, match='NotARule'):
        build_inter_rule(dict(type='NotARule'))
    with pytest.raises(ValueError, match='normalize'):
        FullerInter(normalize='median')
    with pytest.raises(ValueError, match=r'\[m, n\]'):
        FullerInter()(torch.zeros(3))
    with pytest.raises(FloatingPointError):
        FullerInter()(torch.tensor([[float('nan'), 1.0]]))


def test_m2_conflict_freedom_has_the_documented_exception_of_a_dropped_task():
    """docs/method.md: for m = 2 the output never conflicts with either task, except with a task
    below rel_floor, which is dropped (weight 0) and may conflict with the output."""
    rule = FullerInter()
    g = torch.tensor([[1.0, 0.0], [-1e-8, 1e-9]], dtype=torch.float64)  # task 2: 1e-8 of task 1, opposed
    out, w = rule.combine_with_weights(g, g @ g.T)
    assert float(w[1]) == 0.0 and float(out @ g[1]) < 0  # dropped, and the output conflicts with it
    g[1] *= 1e3  # above the floor (1e-5 relative): amplified, and no conflict
    out, w = rule.combine_with_weights(g, g @ g.T)
    assert float(w[1]) > 0 and float(out @ g[0]) >= 0 and float(out @ g[1]) >= -1e-12 * float(out.norm() * g[1].norm())
