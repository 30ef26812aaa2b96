r"""Regression losses and weight penalties (pure jnp, per-sample values; the trainer averages).

Every loss has the signature ``loss(pred, target, e_true) -> [n]`` where ``pred`` and ``target``
are [n] or [n, k] (summed over k) and ``e_true`` [n] is the true energy, used by the energy-aware
losses. :data:`LOSSES` maps the names accepted by configurations to factories taking the loss's
options (see :func:`get_loss`).

- ``mse``: (y - y_hat)^2; ``mae``: |y - y_hat|; ``huber``: quadratic below ``delta``, linear above.
- ``physics``: (E - E_hat)^2 / E, the stochastic-term-weighted MSE of the LUXE study.
- ``truncated_gaussian``: the negative log-likelihood (times 2) of the truth under a Gaussian of
  mean E_hat and width :math:`\sigma = k\sqrt{E}` truncated to the training range [a, b]:

  .. math::
     \mathcal{L} = \frac{(E - \hat E)^2}{\sigma^2}
       + \ln\Big(\frac{\pi\sigma^2}{2}\big[\mathrm{erf}\big(\tfrac{\hat E - a}{\sqrt2\sigma}\big)
       - \mathrm{erf}\big(\tfrac{\hat E - b}{\sqrt2\sigma}\big)\big]^2\Big)

  The second (boundary-correction) term is 2 ln of the Gaussian's probability inside [a, b] (up
  to the constant ln 2 pi sigma^2): near a range edge a prediction is no longer pulled towards the
  centre of the range, which removes the edge bias of MSE (toy-calorimeter seed talk). The
  probability is computed as a difference of normal CDFs in log space, stable far in the tails.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

__all__ = ["mse", "mae", "huber", "physics_weighted", "truncated_gaussian", "LOSSES", "get_loss",
           "weight_penalty"]


def _sum_last(v):
    return v if v.ndim == 1 else jnp.sum(v.reshape(v.shape[0], -1), axis=-1)


def mse(pred, target, e_true=None):
    return _sum_last((pred - target) ** 2)


def mae(pred, target, e_true=None):
    return _sum_last(jnp.abs(pred - target))


def huber(pred, target, e_true=None, *, delta: float = 1.0):
    r = jnp.abs(pred - target)
    return _sum_last(jnp.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)))


def physics_weighted(pred, target, e_true):
    """((E - E_hat) / sqrt(E))^2 with E the true energy (GeV)."""
    e = e_true if pred.ndim == 1 else e_true[:, None]
    return _sum_last((pred - target) ** 2 / e)


def _log_diff_ndtr(hi, lo):
    """log(Phi(hi) - Phi(lo)) for hi > lo, stable in both tails (uses the symmetry Phi(-x) = 1 - Phi(x))."""
    flip = lo > 0           # both in the upper tail: use 1 - Phi on the mirrored arguments
    h = jnp.where(flip, -lo, hi)
    l_ = jnp.where(flip, -hi, lo)
    log_h, log_l = log_ndtr(h), log_ndtr(l_)
    return log_h + jnp.log1p(-jnp.exp(jnp.minimum(log_l - log_h, -1e-12)))


def truncated_gaussian(pred, target, e_true, *, k: float = 0.31, low: float, high: float):
    r"""Truncated-Gaussian likelihood loss with boundary correction (module docstring).

    Args:
        pred, target: [n] predicted and true energies (GeV).
        e_true: [n] true energy; the width is sigma = k sqrt(e_true) (held fixed: no gradient).
        k: relative width at 1 GeV (GeV^0.5).
        low, high: the training range [a, b] (GeV).
    """
    sigma = jax.lax.stop_gradient(k * jnp.sqrt(jnp.maximum(e_true, 1e-6)))
    if pred.ndim != 1:
        raise ValueError(f"truncated_gaussian: predictions must be [n] energies, got shape {pred.shape}")
    chi2 = ((target - pred) / sigma) ** 2
    # erf((p - a)/(sqrt2 s)) - erf((p - b)/(sqrt2 s)) = 2 [Phi((b - p)/s) - Phi((a - p)/s)]
    log_mass = _log_diff_ndtr((high - pred) / sigma, (low - pred) / sigma)
    return chi2 + math.log(2.0 * math.pi) + 2.0 * jnp.log(sigma) + 2.0 * log_mass


def _truncated_factory(*, k: float = 0.31, low: float | None = None, high: float | None = None):
    if low is None or high is None:
        raise ValueError("loss 'truncated_gaussian' needs the training range: low and high (GeV); the "
                         "trainer sets them from the training sample when not given")
    if not high > low:
        raise ValueError(f"loss 'truncated_gaussian': high = {high} must exceed low = {low}")
    if not k > 0:
        raise ValueError(f"loss 'truncated_gaussian': k = {k} must be > 0")
    return lambda p, t, e: truncated_gaussian(p, t, e, k=k, low=low, high=high)


def _huber_factory(*, delta: float = 1.0):
    if not delta > 0:
        raise ValueError(f"loss 'huber': delta = {delta} must be > 0")
    return lambda p, t, e: huber(p, t, e, delta=delta)


def _plain(fn):
    def factory(**options):
        if options:
            raise ValueError(f"loss {fn.__name__!r} takes no options, got {sorted(options)}")
        return fn
    return factory


#: name -> factory(**options) -> loss(pred, target, e_true) -> [n]
LOSSES = {
    "mse": _plain(mse),
    "mae": _plain(mae),
    "huber": _huber_factory,
    "physics": _plain(physics_weighted),
    "truncated_gaussian": _truncated_factory,
}


def get_loss(name: str, **options):
    """The loss called ``name`` with its options; the error lists the known losses."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")
    return LOSSES[name](**options)


def weight_penalty(params, *, l1: float = 0.0, l2: float = 0.0):
    """l1 sum|w| + l2 sum w^2 over the weight matrices/kernels in ``params`` (biases and
    normalisation scales excluded: leaves with fewer than 2 dimensions)."""
    leaves = [w for w in jax.tree_util.tree_leaves(params) if getattr(w, "ndim", 0) >= 2]
    total = jnp.zeros(())
    if l1:
        total = total + l1 * sum(jnp.sum(jnp.abs(w)) for w in leaves)
    if l2:
        total = total + l2 * sum(jnp.sum(w * w) for w in leaves)
    return total
