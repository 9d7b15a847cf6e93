"""Queueing theory the simulator is checked against, computed from first principles.

Kept out of flashsale.sim on purpose: a reference must not share code with what it checks.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["erlang_a", "erlang_c", "erlang_c_mean_wait"]


def erlang_c(c: int, offered: float) -> float:
    """P(wait > 0) in M/M/c with offered load ``offered`` = lambda/mu (< c): Erlang's C formula."""
    if not 0 < offered < c:
        raise ValueError(f"offered load must be in (0, c={c}), got {offered}")
    terms = sum(offered**k / math.factorial(k) for k in range(c))
    top = offered**c / math.factorial(c) * c / (c - offered)
    return top / (terms + top)


def erlang_c_mean_wait(c: int, lam: float, mu: float) -> float:
    """Mean wait in queue of M/M/c: C(c, a) / (c mu - lambda)."""
    return erlang_c(c, lam / mu) / (c * mu - lam)


def erlang_a(c: int, lam: float, mu: float, theta: float, n_max: int = 4000) -> dict[str, float]:
    """M/M/c+M (Erlang A, Palm): exponential patience of rate ``theta``.

    Solved as the birth-death chain it is (birth lam; death min(n, c) mu +
    max(n - c, 0) theta), truncated at ``n_max``. By PASTA an arrival finds n with
    probability pi_n; it waits if n >= c. Abandonments per unit time are
    sum (n - c) theta pi_n, so the share of arrivals who abandon is that / lam.
    """
    n = np.arange(n_max + 1)
    death = np.minimum(n, c) * mu + np.maximum(n - c, 0) * theta
    log_pi = np.concatenate([[0.0], np.cumsum(np.log(lam) - np.log(death[1:]))])
    pi = np.exp(log_pi - log_pi.max())
    pi /= pi.sum()
    return {
        "p_wait": float(pi[c:].sum()),
        "p_abandon": float((np.maximum(n - c, 0) * theta * pi).sum() / lam),
    }
