"""The tensor math of one calibrated step, free of any training framework.

With ``m`` tasks, ``F`` the shared feature and ``F'`` its detached leaf copy (the heads run on
``F'``):

1. :func:`task_gradients`: for each task ``t``, one backward through its head only gives
   ``g_t = dL_t/dF'`` (a row of ``G`` [m, n], fp32) and the head's parameter gradients ``h_t``.
2. :func:`gram_matrix`: ``K = G G^T`` [m, m] in float64 from fp32 products. Every rule in use
   is a weighting ``w(K)``; under DDP the Gram matrices of the ranks add up to the Gram matrix
   of the global batch (see ``docs/method.md``), so ``K`` is all that is exchanged.
3. The rule's weights ``w = rule.weights(K)`` give the calibrated gradient ``g = w @ G``.
4. :func:`surrogate_loss`: one backward of ``<F, g> + sum_t <theta_heads, h_t>`` puts ``g``
   through the backbone and ``h_t`` on the head parameters, every gradient in one pass.

:func:`gram_diagnostics` turns ``K`` and ``w`` into the logged norms, cosine and weights
without another pass over the gradients.
"""

import torch
from torch import Tensor


def task_gradients(totals: dict[str, Tensor], leaf: Tensor, params: list[Tensor],
                   loss_scale: float = 1.0, retain_graph: bool = False) -> tuple[Tensor, list[list[Tensor | None]]]:
    """Per-task gradients at the shared feature, and the head parameter gradients.

    Args:
        totals: each task's (weighted) total loss, computed from ``leaf``.
        leaf: the detached leaf copy ``F'`` of the shared feature the heads ran on.
        params: the trainable parameters (those not reachable from ``leaf`` get ``None``).
        loss_scale: the losses are multiplied by this before the backward and the gradients
            divided by it after (fp16 AMP's loss scale; 1.0 otherwise).
        retain_graph: keep each task's graph after its pass. Not needed when the tasks' graphs
            below ``leaf`` are disjoint (each head its own modules, as in FullerNet): freeing
            them as the plain backward does keeps the calibrated step at the plain step's cost
            (measured: 1.06x with retained graphs, 1.00x without, demo model on CPU).

    Raises:
        RuntimeError: with ``retain_graph=False``, the tasks share computation below ``leaf``.

    Returns:
        ``G`` [m, numel(leaf)] in fp32 (zeros for a task that does not depend on ``leaf``), and
        for each task the list of parameter gradients (fp32 when ``loss_scale != 1``).
    """
    rows, head_grads = [], []
    for task, total in totals.items():
        try:
            g, *pg = torch.autograd.grad(total * loss_scale if loss_scale != 1.0 else total, [leaf, *params],
                                         retain_graph=retain_graph, allow_unused=True)
        except RuntimeError as e:
            if 'second time' not in str(e):
                raise
            raise RuntimeError(f'the loss of task {task!r} shares computation with an earlier task below the shared '
                               'feature (heads with common modules); set optim_wrapper.retain_task_graphs=True') from e
        g = torch.zeros_like(leaf, dtype=torch.float32) if g is None else g.float()
        if loss_scale != 1.0:
            g = g / loss_scale
            pg = [None if x is None else x.float() / loss_scale for x in pg]
        rows.append(g.flatten())
        head_grads.append(pg)
    return torch.stack(rows), head_grads


def gram_matrix(matrix: Tensor) -> Tensor:
    """``G G^T`` in float64, from fp32 (or wider) products whatever ``G``'s dtype, so that fp16
    or bf16 task gradients cannot overflow or lose the Gram matrix."""
    m = matrix if matrix.dtype in (torch.float32, torch.float64) else matrix.float()
    return (m @ m.T).double()


def gram_diagnostics(gram: Tensor, weights: Tensor | None, tasks: list[str]) -> dict[str, float]:
    """Norm of each task gradient, their cosine (two tasks), the rule's weights and the norm of
    the combined gradient, all from ``K`` (and ``w``)."""
    k = gram.double()
    norms = k.diagonal().clamp_min(0).sqrt()
    out = {f'calib/grad_norm_{t}': float(n) for t, n in zip(tasks, norms)}
    if len(tasks) == 2:
        out['calib/cos'] = float(k[0, 1] / (norms[0] * norms[1]).clamp_min(1e-300))
    if weights is not None:
        w = weights.double().to(k.device)
        out.update({f'calib/weight_{t}': float(x) for t, x in zip(tasks, w)})
        out['calib/grad_norm_combined'] = float((w @ k @ w).clamp_min(0).sqrt())
    return out


def surrogate_loss(shared: Tensor, combined: Tensor, params: list[Tensor],
                   head_grads: list[list[Tensor | None]]) -> Tensor:
    """``<F, g> + sum_t <theta, h_t>`` with ``g`` and ``h_t`` detached: its gradient is ``g`` at
    ``F`` (and from there through the backbone) and ``sum_t h_t`` on the head parameters."""
    loss = (shared * combined.view_as(shared).to(shared.dtype).detach()).sum()
    for i, p in enumerate(params):
        hs = [pg[i] for pg in head_grads if pg[i] is not None]
        if hs:
            loss = loss + (p * sum(hs).to(p.dtype).detach()).sum()
    return loss
