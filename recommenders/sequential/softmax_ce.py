"""Cross-entropy over every item with one exponential pass: the softmax of the forward is kept for the backward.

``F.cross_entropy`` computes ``log_softmax`` (one pass of ``exp``), then in the backward zero-fills a
``[targets, items]`` gradient for ``nll_loss``, and ``log_softmax``'s backward takes ``exp`` of every log-probability
again. The full-softmax loss of the sequential models is the largest elementwise work of their step (2,048 targets
x 3,124 items on MovieLens-1M), so :func:`softmax_cross_entropy` keeps the unnormalised ``exp`` of the forward and
returns ``(softmax - onehot) / n`` from it: the same loss and gradient, with one ``exp`` pass instead of two.
"""
from __future__ import annotations

import torch


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of float32 logits; saves ``exp(logits - max)`` and its row sums for the backward."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # no float32 copy of the logits: the max of bfloat16 values is exact, and the subtraction promotes
        peak = logits.amax(1, keepdim=True).float()
        exps = torch.sub(logits, peak).exp_()
        sums = exps.sum(1, keepdim=True)
        losses = (sums.log() + peak).squeeze(1) - logits.gather(1, targets[:, None]).squeeze(1).float()
        ctx.save_for_backward(exps, sums, targets)
        ctx.logits_dtype = logits.dtype
        return losses.mean()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        exps, sums, targets = ctx.saved_tensors
        scale = grad_out / exps.shape[0]
        grad = exps * (scale / sums)
        grad[torch.arange(len(targets), device=grad.device), targets] -= scale
        return grad.to(ctx.logits_dtype), None


def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(logits.float(), targets)`` (mean over the rows) with one ``exp`` pass (module doc).

    Args:
        logits: ``[n, classes]`` scores in any float dtype (bfloat16 under autocast); the softmax runs in
            float32 and the gradient comes back in ``logits``' dtype.
        targets: ``[n]`` int64 class indices.

    Returns:
        The scalar mean loss (float32).

    Raises:
        ValueError: ``logits`` is not 2-D, or ``targets`` does not hold one index per row.

    Example:
        >>> logits = torch.randn(4, 10, requires_grad=True)
        >>> loss = softmax_cross_entropy(logits, torch.tensor([1, 0, 9, 3]))
        >>> loss.backward()
    """
    if logits.dim() != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"softmax_cross_entropy: logits [n, classes] and targets [n], got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    return _SoftmaxCrossEntropy.apply(logits, targets)
