"""Calibrate the checkout model from a replay: per-step service demand, concurrency,
payment gateway time and payment failures against load.

A replay's latency is queue wait + time on a worker + payment gateway time; the
simulator models the three apart (``[service]``: workers, ``step_s``,
``payment.gateway_s``). Copying a step's latency into ``step_s`` counts the wait
and the gateway as work (issue 14). This module separates them two ways:

- **Server-Timing** (schema v2 requests tables, columns ``queue_wait``,
  ``service_time``, ``gateway_time``): the target said how long each request
  waited, worked and waited on the gateway. The service demand is fitted to
  ``service_time``, the gateway to ``gateway_time``; the concurrency is the
  number of requests of the pool on a worker at the moment a request that had
  waited got one (a worker was then just freed: every worker was busy). The
  parts are placed inside each latency, the time the target did not report (the
  network, the client's and the server's own lag) split evenly around them.
- **Response times only** (any target, any table): the regression of Kraft,
  Pacheco-Sanchez, Casale & Dawson, "Estimating Service Resource Consumption
  From Response Time Measurements", VALUETOOLS 2009 (a request's response time is
  its own demand plus the demands of the requests it finds in the station, shared
  among the servers). In a FCFS pool of ``c`` workers whose mix of requests has
  the mean demand ``D``, a request that finds ``n`` others waits for
  ``max(0, n - c + 1)`` departures at rate ``c / D`` (exact for exponential
  demands)::

      E[R | n, step] = a[step] + D * max(0, n - c + 1) / c,   D = mix @ (a - G)

  ``a[step]`` is the step's latency with a worker free: its demand, plus ``G``
  for pay (the gateway, outside the workers). ``n`` is counted from the table:
  the requests of the same pool sent before and not yet answered, a payment
  counting only until its gateway call. For each ``c`` the model is linear in
  ``a``; ``c`` is the one with the least squared error, and ``G`` the one whose
  load counts fit best. ``c`` is identified only where at least
  :data:`MIN_REQUESTS` requests found the workers busy; otherwise it is unknown
  (then the scenario's value is kept, and said so).

Payment failures: the scenario's own law, ``p = min(1, failure_prob +
failure_growth * max(0, L - load_knee))`` with ``L`` the pay pool's occupancy
(requests in service and queued per worker) when the payment reached the pool,
itself excluded, as the simulator reads it (the reference service reads it when
the payment's worker takes it): with Server-Timing at the payment's arrival on the
server, else at its send. Fitted by maximum likelihood over the answered payments (402
declined, 201 paid); kept flat (one probability with its exact binomial interval)
unless the growth is significant (likelihood ratio, 5%).

Every estimate carries a 95% interval: percentile bootstrap over requests
(:data:`BOOTSTRAP`, seeded), Clopper-Pearson for a flat failure probability.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from flashsale.outcome import STEP, Outcome

__all__ = [
    "BOOTSTRAP",
    "MIN_REQUESTS",
    "STEPS",
    "Calibration",
    "CalibrationError",
    "Estimate",
    "PaymentFit",
    "PoolFit",
    "StepFit",
    "calibrate_outcomes",
    "fit_censored_lognormal",
    "fit_failures",
    "fit_pool",
    "fit_service_times",
    "in_flight_at",
    "pools_of",
    "round_fit",
    "wait_factor",
]

STEPS = ("view", "cart", "pay")
"""The steps with a service time (``service.step_s``)."""

MIN_REQUESTS = 30
"""Fewest answered requests of a step to fit it: below, an interval means nothing."""

BOOTSTRAP = 200
"""Bootstrap resamples per interval."""

_SEED = 20091020  # VALUETOOLS 2009: the bootstrap is seeded, so a calibration is repeatable
_NOT_SERVED = (0, 429, 499, 503)  # no answer, turned away at the edge or by the queue
_VIEW_LIKE = ("view", "captcha", "lottery")  # served as views (their service time is a view's)
_GATEWAY_ANSWERS = (201, 402)  # payments the gateway answered: paid or declined
_DECLINED = 402
_GATEWAY_TIMEOUT = 504


class CalibrationError(ValueError):
    """Tables that cannot be calibrated from (too few requests of a step)."""


@dataclass(frozen=True)
class Estimate:
    """A fitted value, its 95% interval (``low``..``high``) and how it was found."""

    value: float
    low: float
    high: float
    method: str

    def describe(self, unit: str = "", digits: int = 4) -> str:
        """``0.0131 s, 95% CI 0.0123 to 0.0150 s; method`` (for a TOML comment)."""
        u = f" {unit}" if unit else ""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return self.method
        return (
            f"{self.value:.{digits}g}{u}, 95% CI {self.low:.{digits}g} to "
            f"{self.high:.{digits}g}{u}; {self.method}"
        )


@dataclass(frozen=True)
class StepFit:
    """One step's fit: demand (mean seconds on a worker) and its distribution, the
    concurrency of its pool, and the latency model against load for the report.

    ``load`` is the requests of the pool in flight when each fitted request was
    sent; ``latency`` its observed latency; ``predicted`` the model's
    ``a + D * wait_factor(load, c)`` for it, with ``model`` = ``(a, D, c)``: ``a``
    the step's latency with a worker free, ``D`` the pool's mean demand.
    """

    step: str
    n: int
    demand: Estimate
    dist: dict[str, Any]
    shape: Estimate | None
    concurrency: Estimate | None
    identified: bool
    load: np.ndarray
    latency: np.ndarray
    predicted: np.ndarray
    r2: float
    mape: float
    model: tuple[float, float, float]


@dataclass(frozen=True)
class PaymentFit:
    """The gateway time (mean, its distribution) and the failure law's parameters."""

    gateway: Estimate | None
    gateway_dist: dict[str, Any]
    failure_prob: Estimate
    failure_growth: Estimate | None
    load_knee: float | None
    payments: int
    declined: int
    load: np.ndarray = field(repr=False)
    declines: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Calibration:
    """Everything fitted from a replay's tables."""

    source: str
    steps: dict[str, StepFit]
    pools: dict[str, tuple[str, ...]]
    payment: PaymentFit
    unreported: float = math.nan
    """With Server-Timing: the share of the fitted requests' total latency the target
    did not account for (the network, the client's and the server's own lag)."""


def in_flight_at(times: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """For each of ``times``: how many intervals ``[start, end)`` hold it.

    ``times`` (k,), ``start`` and ``end`` (m,), seconds. A request counted at its own
    send time holds it too: subtract 1 for "others".
    """
    s, e = np.sort(start), np.sort(end)
    held = np.searchsorted(s, times, "right") - np.searchsorted(e, times, "right")
    return np.asarray(held, dtype=float)


def _percentile_ci(samples: np.ndarray) -> tuple[float, float]:
    lo, hi = np.nanpercentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


# ------------------------------------------------------------ service time shape


def fit_service_times(
    x: np.ndarray, rng: np.random.Generator
) -> tuple[Estimate, dict[str, Any], Estimate | None]:
    """Mean of ``x`` (seconds, > 0) with a bootstrap interval, and the distribution the
    scenario supports that fits it best by AIC: exponential (1 parameter), lognormal
    or gamma (2; the gamma only when its cv differs significantly from the
    exponential's 1, likelihood ratio at 5%), or constant when the spread is under 5%
    of the mean. Returns
    ``(mean, scenario distribution table, shape estimate or None)``.
    """
    x = x[x > 0]
    n = x.size
    if n < 2:
        raise CalibrationError(f"{n} positive service times: too few to fit")
    idx = rng.integers(0, n, (BOOTSTRAP, n))
    boots = x[idx]
    means = boots.mean(axis=1)
    lo, hi = _percentile_ci(means)
    mean = Estimate(float(x.mean()), lo, hi, f"mean of {n:,} requests, bootstrap")
    cv = float(x.std(ddof=1) / x.mean())
    if cv < 0.05:
        return mean, {"dist": "constant", "value": round_fit(mean.value)}, None
    logx = np.log(x)
    mu, sigma = float(logx.mean()), float(logx.std())
    ll_exp = float(np.sum(stats.expon.logpdf(x, scale=x.mean())))
    ll_ln = float(np.sum(stats.norm.logpdf(logx, mu, sigma) - logx)) if sigma > 0 else -math.inf
    shape_g, _, scale_g = stats.gamma.fit(x, floc=0)
    ll_g = float(np.sum(stats.gamma.logpdf(x, shape_g, scale=scale_g)))
    aic = {"exponential": 2 - 2 * ll_exp, "lognormal": 4 - 2 * ll_ln, "gamma": 4 - 2 * ll_g}
    if 2 * (ll_g - ll_exp) < 3.84:  # nested (cv = 1): the gamma's cv is not significant
        del aic["gamma"]
    best = min(aic, key=lambda k: aic[k])
    if best == "exponential":
        return mean, {"dist": "exponential", "mean": round_fit(mean.value)}, None
    if best == "lognormal":
        s_lo, s_hi = _percentile_ci(np.log(boots).std(axis=1))
        shape = Estimate(sigma, s_lo, s_hi, "lognormal by maximum likelihood (AIC), bootstrap")
        return (
            mean,
            {"dist": "lognormal", "median": round_fit(math.exp(mu)), "sigma": round_fit(sigma)},
            shape,
        )
    cvs = boots.std(axis=1, ddof=1) / means
    c_lo, c_hi = _percentile_ci(cvs)
    g_cv = 1 / math.sqrt(shape_g)
    return (
        mean,
        {
            "dist": "gamma",
            "mean": round_fit(mean.value),
            "cv": round_fit(min(10.0, max(0.001, g_cv))),
        },
        Estimate(g_cv, c_lo, c_hi, "gamma cv by maximum likelihood (AIC), bootstrap"),
    )


def fit_censored_lognormal(
    x: np.ndarray, cut: int, timeout_s: float, rng: np.random.Generator
) -> tuple[Estimate, dict[str, Any]]:
    """A lognormal fitted by maximum likelihood to times ``x`` (seconds) of which
    ``cut`` more were cut at ``timeout_s`` (right-censored: known only to be longer),
    e.g. gateway calls that timed out. Returns ``(mean with a bootstrap interval,
    scenario distribution table)``."""
    from scipy import optimize

    logx, log_t = np.log(x[x > 0]), math.log(timeout_s)

    def fit(lx: np.ndarray, k: int) -> tuple[float, float]:
        def nll(theta: np.ndarray) -> float:
            mu, sigma = float(theta[0]), math.exp(float(theta[1]))
            return -float(
                np.sum(stats.norm.logpdf(lx, mu, sigma) - lx)
                + k * stats.norm.logsf(log_t, mu, sigma)
            )

        start = np.array([lx.mean(), math.log(max(lx.std(), 1e-3))])
        res = optimize.minimize(nll, start, method="Nelder-Mead")
        return float(res.x[0]), math.exp(float(res.x[1]))

    mu, sigma = fit(logx, cut)
    n = logx.size + cut
    boots = []
    for _ in range(BOOTSTRAP // 2):
        i = rng.integers(0, n, n)
        b_mu, b_sigma = fit(logx[i[i < logx.size]], int((i >= logx.size).sum()))
        boots.append(math.exp(b_mu + b_sigma**2 / 2))
    method = (
        f"lognormal by maximum likelihood, {cut} of {n:,} cut at the {timeout_s:g} s timeout "
        "(censored), bootstrap"
    )
    mean = Estimate(math.exp(mu + sigma**2 / 2), *_percentile_ci(np.array(boots)), method)
    return mean, {"dist": "lognormal", "median": round_fit(math.exp(mu)), "sigma": round_fit(sigma)}


def round_fit(v: float) -> float:
    """A fitted value with 4 significant digits: more would claim a precision no
    interval here has."""
    return float(f"{v:.4g}")


# --------------------------------------------------------------- the regression


def wait_factor(n: np.ndarray, c: float) -> np.ndarray:
    """``max(0, n - c + 1) / c``: the mean queue wait of a FCFS ``c``-server station, in
    units of the mean demand, for a request finding ``n`` others (Kraft et al. 2009,
    multi-server form; exact for exponential demands)."""
    return np.asarray(np.maximum(0.0, n - c + 1.0) / c, dtype=float)


@dataclass(frozen=True)
class PoolFit:
    """A pool's fit: concurrency, the mean demand of its mix of steps, and per step the
    latency with a worker free (``intercepts``: demand, plus the gateway for pay), the
    demand, and the gateway (outside the workers) where a step has one."""

    concurrency: Estimate
    identified: bool
    mean_demand: Estimate
    intercepts: dict[str, float]
    demands: dict[str, Estimate]
    gateway: Estimate | None


def _profile(
    n: np.ndarray,
    s: np.ndarray,
    k: int,
    w: np.ndarray,
    wr: np.ndarray,
    wrr: np.ndarray,
    cs: np.ndarray,
    mix: np.ndarray,
    outside: np.ndarray,
) -> tuple[int, np.ndarray, float]:
    """Least squares of ``r = a[s] + (D / c) * max(0, n - c + 1)`` over the candidate
    ``cs``, with ``D = mix @ (a - outside)``: one intercept per step ``s`` in 0..k-1
    (its latency with a worker free), and the queue drained by the pool's own mean
    demand (the demands of the requests ahead, as in Kraft et al. 2009), so for each
    ``c`` the model is linear in ``a``. Requests are grouped by (step, load): ``w``
    each group's weight, ``wr`` and ``wrr`` its weighted sums of latency and squared
    latency. Returns ``(index of the best c, a, residual sum of squares)``."""
    onehot = np.zeros((n.size, k))
    onehot[np.arange(n.size), s] = 1.0
    zc = np.maximum(0.0, n[None, :] - cs[:, None] + 1.0) / cs[:, None]  # (C, groups)
    x = onehot[None, :, :] + zc[:, :, None] * mix[None, None, :]  # (C, groups, k)
    shift = float(mix @ outside)  # y = r + zc * shift: the model less its constant part
    xtwx = np.einsum("cgk,g,cgl->ckl", x, w, x)
    xtwy = np.einsum("cgk,g->ck", x, wr) + shift * np.einsum("cgk,g,cg->ck", x, w, zc)
    ywy = float(wrr.sum()) + 2 * shift * (zc @ wr) + shift**2 * ((zc * zc) @ w)
    a = np.linalg.solve(xtwx + 1e-12 * np.eye(k), xtwy[:, :, None])[:, :, 0]
    sse = ywy - 2 * np.einsum("ck,ck->c", a, xtwy) + np.einsum("ck,ckl,cl->c", a, xtwx, a)
    best = int(np.argmin(sse * (1 + 1e-12 * np.arange(cs.size))))  # ties: fewest workers
    return best, a[best], float(sse[best])


def fit_pool(
    load: np.ndarray,
    latency: np.ndarray,
    step: np.ndarray,
    steps: Sequence[str],
    rng: np.random.Generator,
    *,
    gateway: float = 0.0,
    resamples: int = BOOTSTRAP,
) -> tuple[PoolFit, float]:
    """Fit ``latency ~ a[step] + (D / c) * max(0, load - c + 1)`` for one pool (Kraft et
    al. 2009, module docstring), ``c`` over 1..(the highest load + 1), with bootstrap
    intervals over requests (``resamples``). ``load``: the pool's other requests in
    flight at each send. A step's intercept ``a`` is its demand, plus ``gateway`` for
    pay (a time outside the workers, fitted by :func:`calibrate_outcomes`); ``D`` is
    the mean demand of the pool's mix of steps, which drains the queue at ``c / D``.
    ``c`` is identified when at least :data:`MIN_REQUESTS` requests found ``c`` or more
    others in flight. Returns the fit and its residual sum of squares.
    """
    k = len(steps)
    s_idx = np.zeros(step.size, dtype=int)
    for j, name in enumerate(steps):
        s_idx[step == name] = j
    top = int(load.max()) + 1 if load.size else 1
    cs = np.unique(np.round(np.geomspace(1, max(1, top), min(max(1, top), 200))))
    cs = cs.astype(float)
    j_pay = list(steps).index("pay") if "pay" in steps else None
    # group the requests by (step, load): the fit needs only each group's count and sum
    keys, group = np.unique(s_idx * (top + 1) + load.astype(int), return_inverse=True)
    g_n, g_s = (keys % (top + 1)).astype(float), keys // (top + 1)

    mix = np.bincount(s_idx, minlength=k) / max(1, s_idx.size)
    outside = np.zeros(k)
    if j_pay is not None:
        outside[j_pay] = gateway

    def derive(w: np.ndarray) -> np.ndarray:
        gw = np.bincount(group, w, minlength=keys.size)
        wr = np.bincount(group, w * latency, keys.size)
        wrr = np.bincount(group, w * latency**2, keys.size)
        i, a, sse = _profile(g_n, g_s, k, gw, wr, wrr, cs, mix, outside)
        demands = np.maximum(0.0, a - outside)
        busy = float(gw[g_n >= cs[i]].sum())  # requests that found every worker busy
        return np.concatenate([[cs[i], mix @ demands, sse, busy], demands, a])

    point = derive(np.ones_like(latency))
    boots = np.array(
        [
            derive(
                np.bincount(
                    rng.integers(0, latency.size, latency.size), minlength=latency.size
                ).astype(float)
            )
            for _ in range(resamples)
        ]
    ).reshape(resamples, point.size)
    method = "response-time regression (Kraft et al. 2009), bootstrap"

    def est(col: int) -> Estimate:
        if not resamples:
            return Estimate(float(point[col]), math.nan, math.nan, method)
        return Estimate(float(point[col]), *_percentile_ci(boots[:, col]), method)

    identified = bool(point[3] >= MIN_REQUESTS)  # enough requests found the workers busy
    conc = est(0)
    if not identified:
        conc = Estimate(
            float(point[0]),
            float(top),
            math.inf,
            f"not identified: {point[3]:.0f} requests found {point[0]:.0f} or more others in "
            f"flight, fewer than the {MIN_REQUESTS} needed (at most {top - 1} in flight)",
        )
    fit = PoolFit(
        concurrency=conc,
        identified=identified,
        mean_demand=est(1),
        intercepts={s: float(point[4 + k + j]) for j, s in enumerate(steps)},
        demands={s: est(4 + j) for j, s in enumerate(steps)},
        gateway=None,
    )
    return fit, float(point[2])


def _goodness(load: np.ndarray, latency: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """R² and mean absolute percentage error of the mean latency per load level
    (up to 30 levels of equal counts): a single request's latency scatters by its
    own service time, which no model of the mean explains."""
    edges = np.unique(np.quantile(load, np.linspace(0, 1, 31)))
    which = np.clip(np.searchsorted(edges, load, "right") - 1, 0, max(0, edges.size - 2))
    k = np.bincount(which).astype(float)
    keep = k > 0
    obs = np.bincount(which, latency)[keep] / k[keep]
    fit = np.bincount(which, predicted)[keep] / k[keep]
    w = k[keep]
    mean = np.average(obs, weights=w)
    ss_tot = float(np.sum(w * (obs - mean) ** 2))
    ss_res = float(np.sum(w * (obs - fit) ** 2))
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else math.nan
    mape = float(np.average(np.abs(fit - obs) / obs, weights=w)) if np.all(obs > 0) else math.nan
    return r2, mape


# ------------------------------------------------------------------- failures


def _fail_nll(
    params: Sequence[float] | np.ndarray, u: np.ndarray, m: np.ndarray, k: np.ndarray, knee: float
) -> float:
    """Negative log-likelihood of the failure law: ``k`` of ``m`` payments declined at
    each load level ``u``."""
    p0, g = params
    p = np.clip(p0 + g * np.maximum(0.0, u - knee), 1e-9, 1 - 1e-9)
    return -float(k @ np.log(p) + (m - k) @ np.log1p(-p))


def _fit_growth(
    u: np.ndarray, m: np.ndarray, k: np.ndarray, knees: np.ndarray, start: Sequence[float]
) -> tuple[float, float, float, float]:
    """Maximum likelihood ``(p0, growth, knee, nll)`` over the candidate ``knees``: for
    each, Newton's method on the concave log-likelihood of ``p = p0 + growth * x``
    (``x = max(0, u - knee)``, ``p`` capped at 1), steps halved until the likelihood
    does not fall, both parameters kept >= 0."""
    best = (0.0, 0.0, 0.0, math.inf)
    for knee in knees:
        x = np.maximum(0.0, u - knee)
        theta = np.array([max(1e-6, start[0]), max(0.0, start[1])])
        nll = _fail_nll(theta, u, m, k, float(knee))
        for _ in range(50):
            q = theta[0] + theta[1] * x
            p = np.clip(q, 1e-9, 1 - 1e-9)
            free = q < 1 - 1e-9  # where min(1, ...) holds at 1 the parameters do not act
            d1 = np.where(free, k / p - (m - k) / (1 - p), 0.0)
            d2 = np.where(free, k / p**2 + (m - k) / (1 - p) ** 2, 0.0)
            grad = np.array([d1.sum(), d1 @ x])
            hess = np.array([[d2.sum(), d2 @ x], [d2 @ x, d2 @ (x * x)]])
            try:
                step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
            except np.linalg.LinAlgError:
                break
            t = 1.0
            while t > 1e-6:
                new = np.maximum(theta + t * step, [1e-9, 0.0])
                new[0] = min(new[0], 1 - 1e-9)
                if (trial := _fail_nll(new, u, m, k, float(knee))) <= nll:
                    break
                t /= 2
            else:
                break
            done = abs(nll - trial) < 1e-10
            theta, nll = new, trial
            if done:
                break
        if nll < best[3]:
            best = (float(theta[0]), float(theta[1]), float(knee), nll)
    return best


def fit_failures(
    load: np.ndarray, declined: np.ndarray, rng: np.random.Generator
) -> tuple[Estimate, Estimate | None, float | None]:
    """The failure law from payments the gateway answered: ``load`` the occupancy each
    met (requests in the pay pool per worker), ``declined`` True for a 402. Returns
    ``(failure_prob, failure_growth, load_knee)``: flat (growth and knee None) with a
    Clopper-Pearson interval unless a growth above a knee (at the load's deciles) is
    significant by the likelihood ratio (chi-squared, 2 degrees of freedom, 5%); then
    bootstrap intervals with the knee kept."""
    y = declined.astype(float)
    m, k = y.size, int(y.sum())
    lo = float(stats.beta.ppf(0.025, k, m - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(0.975, k + 1, m - k)) if k < m else 1.0
    flat = Estimate(k / m if m else 0.0, lo, hi, f"{k} declined of {m:,} payments, Clopper-Pearson")
    if k < 10 or m - k < 10 or np.ptp(load) == 0:
        return flat, None, None
    u, level = np.unique(load, return_inverse=True)  # loads are counts per worker: few levels
    per_m = np.bincount(level, minlength=u.size).astype(float)
    per_k = np.bincount(level, y, minlength=u.size)
    p0 = k / m
    ll0 = -(k * math.log(p0) + (m - k) * math.log1p(-p0))
    knees = np.unique(np.quantile(load, np.linspace(0, 0.9, 10)))
    g_p0, g_g, knee, nll = _fit_growth(u, per_m, per_k, knees, (max(1e-4, p0 / 2), 0.01))
    at = int(np.searchsorted(knees, knee))  # then a finer grid between the neighbours
    finer = np.linspace(knees[max(0, at - 1)], knees[min(knees.size - 1, at + 1)], 21)
    g_p0, g_g, knee, nll = _fit_growth(u, per_m, per_k, finer, (g_p0, g_g))
    if stats.chi2.sf(2 * (ll0 - nll), 2) >= 0.05 or g_g <= 0:
        return flat, None, None
    boots = np.empty((BOOTSTRAP, 2))
    for b in range(BOOTSTRAP):
        i = rng.integers(0, m, m)
        bm = np.bincount(level[i], minlength=u.size).astype(float)
        bk = np.bincount(level[i], y[i], minlength=u.size)
        boots[b] = _fit_growth(u, bm, bk, np.array([knee]), (g_p0, g_g))[:2]
    method = (
        f"maximum likelihood over {m:,} payments ({k} declined), knee at load {knee:.3g}, bootstrap"
    )
    return (
        Estimate(g_p0, *_percentile_ci(boots[:, 0]), method),
        Estimate(g_g, *_percentile_ci(boots[:, 1]), method),
        knee,
    )


# ------------------------------------------------------------------ the tables


def pools_of(service: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Pool name -> the steps it serves, from a scenario's ``[service]`` table: the
    steps no ``[service.pools.*]`` names share the default pool ``"default"``."""
    named = {
        str(name): tuple(p.get("steps", ())) for name, p in (service.get("pools") or {}).items()
    }
    taken = {s for steps in named.values() for s in steps}
    rest = tuple(s for s in STEPS if s not in taken)
    return ({"default": rest} if rest else {}) | named


@dataclass(frozen=True)
class _Requests:
    """The requests of every replication, in one set of arrays (times per replication)."""

    rep: np.ndarray
    step: np.ndarray  # step names, with captcha and lottery as "view"
    sent: np.ndarray
    latency: np.ndarray
    status: np.ndarray
    queue_wait: np.ndarray
    service_time: np.ndarray
    gateway_time: np.ndarray

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> _Requests:
        cols: dict[str, list[np.ndarray]] = {k: [] for k in cls.__dataclass_fields__}
        names = np.array([("view" if s in _VIEW_LIKE else s) for s in STEP])
        for r, o in enumerate(outcomes):
            rq = o.requests
            size = rq["sent"].size
            cols["rep"].append(np.full(size, r))
            cols["step"].append(names[rq["step"]])
            for k in ("sent", "latency"):
                cols[k].append(rq[k].astype(float))
            cols["status"].append(rq["status"].astype(int))
            for k in ("queue_wait", "service_time", "gateway_time"):
                cols[k].append(rq[k].astype(float) if k in rq else np.full(size, np.nan))
        return cls(**{k: np.concatenate(v) if v else np.empty(0) for k, v in cols.items()})

    def served(self) -> np.ndarray:
        return np.asarray(~np.isin(self.status, _NOT_SERVED) & np.isfinite(self.latency))

    def on_server(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """When each request reached the target's queue, got a worker and left it, from
        Server-Timing: its parts sit inside its latency, and what the target did not
        report (the network, the client's and the server's own lag) is split evenly
        around them."""
        qw = np.where(np.isfinite(self.queue_wait), self.queue_wait, 0.0)
        st = np.where(np.isfinite(self.service_time), self.service_time, 0.0)
        gw = np.where(np.isfinite(self.gateway_time), self.gateway_time, 0.0)
        arrived = self.sent + np.maximum(0.0, self.latency - qw - st - gw) / 2
        return arrived, arrived + qw, arrived + qw + st

    def timed(self) -> bool:
        """Server-Timing reported for most served requests of the three steps."""
        sel = self.served() & np.isin(self.step, STEPS)
        return bool(sel.any()) and float(np.isfinite(self.service_time[sel]).mean()) > 0.5


def _others_in_flight(
    rq: _Requests, members: np.ndarray, at: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """For each request of ``members`` (a mask): the requests of the pool (``members``)
    of its replication whose ``[start, end)`` holds its time ``at``, itself excluded."""
    out = np.zeros(rq.sent.size)
    for r in np.unique(rq.rep[members]):
        pool = members & (rq.rep == r)
        s, e = start[pool], end[pool]
        inside = (s <= at[pool]) & (at[pool] < e)
        out[pool] = in_flight_at(at[pool], s, e) - inside
    return out


def calibrate_outcomes(
    outcomes: Sequence[Outcome],
    service: Mapping[str, Any],
    *,
    server_timing: bool = True,
    seed: int = _SEED,
) -> Calibration:
    """Fit the service model to a replay's replications (module docstring).

    ``service`` is the replayed scenario's ``[service]`` table (its pools say which
    steps share workers). With ``server_timing`` False the Server-Timing columns are
    not used even where the target sent them: the whole latency is the model's (an
    effective station that includes what the target did not report). Raises
    CalibrationError when a step has fewer than :data:`MIN_REQUESTS` answered
    requests.
    """
    rng = np.random.default_rng(seed)
    rq = _Requests.of(outcomes)
    served = rq.served()
    pools = pools_of(service)
    pool_of = {s: name for name, steps in pools.items() for s in steps}
    reached = (rq.step == "pay") & np.isin(rq.status, _GATEWAY_ANSWERS)
    fitted = served & np.isin(rq.step, STEPS) & ((rq.step != "pay") | reached)
    for s in STEPS:
        k = int((fitted & (rq.step == s)).sum())
        if k < MIN_REQUESTS:
            raise CalibrationError(
                f"{k} answered {s} request{'s' if k != 1 else ''}: at least {MIN_REQUESTS} "
                "are needed to fit a step (replay more buyers: a larger --scale)"
            )
    timed = server_timing and rq.timed()
    fits: dict[str, StepFit] = {}
    pool_fits: dict[str, PoolFit] = {}
    gateway_dist: dict[str, Any] = {"dist": "constant", "value": 0.0}
    if timed:
        gw = np.where(np.isfinite(rq.gateway_time), rq.gateway_time, 0.0)
        end = rq.sent + np.maximum(0.0, rq.latency - gw)  # off the workers at the gateway
        pool_fits = {name: _timed_pool(rq, steps, fitted, rng) for name, steps in pools.items()}
        gsel = reached & np.isfinite(rq.gateway_time)
        timeout_s = float(service.get("payment", {}).get("timeout_s", 30.0))
        cut = (rq.step == "pay") & (rq.status == _GATEWAY_TIMEOUT) & np.isfinite(rq.gateway_time)
        if int(gsel.sum()) >= MIN_REQUESTS and float(rq.gateway_time[gsel].mean()) > 0:
            if cut.any():  # the gateway's slowest calls were cut at its timeout
                name = pool_of["pay"]
                estimate, gateway_dist = fit_censored_lognormal(
                    rq.gateway_time[gsel], int(cut.sum()), timeout_s, rng
                )
                pool_fits[name] = dataclasses.replace(pool_fits[name], gateway=estimate)
            else:
                _, gateway_dist, _ = fit_service_times(rq.gateway_time[gsel], rng)
    else:
        pool_fits, end, gateway_est = _regression(rq, pools, pool_of, fitted, reached, rng)
        split = _split_pools(rq, pools, fitted, end, gateway_est.value, rng)
        if split != pools:  # steps that queue apart: fit their pools apart
            pools = split
            pool_of = {s: name for name, steps in pools.items() for s in steps}
            pool_fits, end, gateway_est = _regression(rq, pools, pool_of, fitted, reached, rng)
        if gateway_est.value > 0:
            gateway_dist = {"dist": "constant", "value": round_fit(gateway_est.value)}
        name = pool_of["pay"]
        pool_fits[name] = dataclasses.replace(pool_fits[name], gateway=gateway_est)
    for name, fit in pool_fits.items():
        if not fit.identified:  # the model needs workers: the scenario's, said so
            e = fit.concurrency
            kept = float(_workers_of(service, name))
            pool_fits[name] = dataclasses.replace(
                fit, concurrency=Estimate(kept, e.low, e.high, e.method)
            )
    for name, steps in pools.items():
        members = np.isin(rq.step, steps)
        load = _others_in_flight(rq, members, rq.sent, rq.sent, end)
        for s in steps:
            sel = fitted & (rq.step == s)
            fits[s] = _fit_step(rq, s, sel, load, pool_fits[name], timed, rng)
    pay_fit = pool_fits[pool_of["pay"]]
    workers = (
        pay_fit.concurrency.value
        if pay_fit.identified
        else float(_workers_of(service, pool_of["pay"]))
    )
    pay_pool = np.isin(rq.step, pools[pool_of["pay"]])
    if timed:  # the pool's occupancy when the payment reached it, as the simulator reads it
        arrived, _, done = rq.on_server()
        held = _others_in_flight(rq, pay_pool, arrived, arrived, done)
    else:  # the pool's requests in flight when the payment was sent
        held = _others_in_flight(rq, pay_pool, rq.sent, rq.sent, end)
    load = held[fitted & reached] / workers
    declined = rq.status[fitted & reached] == _DECLINED
    failure_prob, failure_growth, knee = fit_failures(load, declined, rng)
    gateway = pay_fit.gateway
    payment = PaymentFit(
        gateway=gateway,
        gateway_dist=gateway_dist,
        failure_prob=failure_prob,
        failure_growth=failure_growth,
        load_knee=knee,
        payments=int(declined.size),
        declined=int(declined.sum()),
        load=load,
        declines=declined.astype(float),
    )
    unreported = math.nan
    if timed:
        parts = [
            np.nan_to_num(x[fitted]) for x in (rq.queue_wait, rq.service_time, rq.gateway_time)
        ]
        total = float(rq.latency[fitted].sum())
        unreported = max(0.0, 1 - float(sum(p.sum() for p in parts)) / total) if total > 0 else 0.0
    source = "server_timing" if timed else "response_times"
    return Calibration(source, fits, pools, payment, unreported)


def _regression(
    rq: _Requests,
    pools: Mapping[str, tuple[str, ...]],
    pool_of: Mapping[str, str],
    fitted: np.ndarray,
    reached: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict[str, PoolFit], np.ndarray, Estimate]:
    """The pools fitted from response times, with the gateway time profiled out.

    A payment holds its worker for its demand, then waits on the gateway outside the
    workers: it counts in the load of others only for its latency less the gateway's
    time. That time ``G`` is the one whose load counts make the pools' regressions
    fit best (least total squared error over a grid from 0 to the 5th percentile of
    the pay latencies); its interval is the profile likelihood's (Gaussian errors:
    ``N log(SSE(G) / SSE_min) <= 3.84``, the 95% chi-squared quantile, 1 degree of
    freedom). Returns the pools, the end of each request's stay and ``G``.
    """
    pay_latency = rq.latency[fitted & reached]
    grid = np.linspace(0.0, float(np.quantile(pay_latency, 0.05)), 25)

    def fit_all(g: float, resamples: int) -> tuple[dict[str, PoolFit], np.ndarray, float]:
        end = rq.sent + np.maximum(0.0, rq.latency - np.where(reached, g, 0.0))
        fits, total = {}, 0.0
        for name, steps in pools.items():
            members = np.isin(rq.step, steps)
            load = _others_in_flight(rq, members, rq.sent, rq.sent, end)
            sel = fitted & members
            fits[name], sse = fit_pool(
                load[sel], rq.latency[sel], rq.step[sel], steps, rng,
                gateway=g, resamples=resamples,
            )  # fmt: skip
            total += sse
        return fits, end, total

    sse = np.array([fit_all(float(g), 0)[2] for g in grid])
    i = int(np.argmin(sse))  # then a finer grid around the best
    grid = np.concatenate(
        [grid, np.linspace(grid[max(0, i - 1)], grid[min(grid.size - 1, i + 1)], 21)]
    )
    sse = np.concatenate([sse, [fit_all(float(g), 0)[2] for g in grid[-21:]]])
    n = int(fitted.sum())
    best = int(np.argmin(sse))
    inside = grid[n * np.log(np.maximum(sse, 1e-300) / max(sse[best], 1e-300)) <= 3.84]
    if inside.min() <= 0:  # no time outside the workers to speak of: none
        best = 0
    fits, end, _ = fit_all(float(grid[best]), BOOTSTRAP)
    method = (
        "response-time regression (Kraft et al. 2009): the time outside the workers that "
        "fits the load best, profile likelihood interval; constant: its mean only"
    )
    estimate = Estimate(float(grid[best]), float(inside.min()), float(inside.max()), method)
    if pool_of["pay"] not in fits:  # every step is in some pool: cannot happen
        raise CalibrationError("no pool serves pay")
    return fits, end, estimate


def _split_pools(
    rq: _Requests,
    pools: Mapping[str, tuple[str, ...]],
    fitted: np.ndarray,
    end: np.ndarray,
    gateway: float,
    rng: np.random.Generator,
) -> dict[str, tuple[str, ...]]:
    """``pools`` with a shared pool split where that fits the response times better by
    the Bayesian information criterion, ``N log(SSE / N) + p log N`` (a pool has one
    concurrency and one intercept per step): steps that queue apart have workers
    apart. Tried: the pool as it is, each step alone beside the others, every step
    alone. A step taken out gets a pool named after it (``view``, ``cart``, ``pay``)."""

    def sse_of(steps: tuple[str, ...]) -> float:
        members = np.isin(rq.step, steps)
        load = _others_in_flight(rq, members, rq.sent, rq.sent, end)
        sel = fitted & members
        _, sse = fit_pool(
            load[sel], rq.latency[sel], rq.step[sel], steps, rng, gateway=gateway, resamples=0
        )
        return sse

    out: dict[str, tuple[str, ...]] = {}
    for name, steps in pools.items():
        n, k = int((fitted & np.isin(rq.step, steps)).sum()), len(steps)
        if k < 2 or n <= 2 * k:
            out[name] = steps
            continue
        alone = {s: sse_of((s,)) for s in steps}
        options: list[tuple[float, dict[str, tuple[str, ...]]]] = [
            (n * math.log(sse_of(steps) / n) + (k + 1) * math.log(n), {name: steps})
        ]
        for s in steps if k > 2 else ():
            rest = tuple(x for x in steps if x != s)
            sse = alone[s] + sse_of(rest)
            options.append((n * math.log(sse / n) + (k + 2) * math.log(n), {name: rest, s: (s,)}))
        split: dict[str, tuple[str, ...]] = {s: (s,) for s in steps}
        options.append((n * math.log(sum(alone.values()) / n) + 2 * k * math.log(n), split))
        out.update(min(options, key=lambda o: o[0])[1])
    return out


def _workers_of(service: Mapping[str, Any], pool: str) -> int:
    if pool == "default":
        return int(service.get("workers", 64))
    return int(service["pools"][pool].get("workers", service.get("workers", 64)))


def _timed_pool(
    rq: _Requests,
    steps: Sequence[str],
    fitted: np.ndarray,
    rng: np.random.Generator,
) -> PoolFit:
    """A pool from Server-Timing. A request that waited got a worker the moment one was
    freed: every other worker was busy then, so the requests on a worker at its start,
    itself included, are the pool's concurrency (median over those that waited,
    bootstrap interval). Not identified when fewer than 5 waited, or when the median
    time on a worker is shorter than the median latency the target did not report
    (the parts cannot then be lined up across requests). Demands are the mean
    ``service_time``, the gateway the mean ``gateway_time``."""
    members = np.isin(rq.step, steps)
    qw = np.where(np.isfinite(rq.queue_wait), rq.queue_wait, 0.0)
    arrived, start, done = rq.on_server()
    busy = _others_in_flight(rq, members, start, start, done) + 1
    waited = members & fitted & (qw > 1e-3)
    b = busy[waited]
    # the parts are placed within each latency to within the time the target did not
    # report: a time on a worker shorter than that cannot be lined up with the others'
    work = float(np.median(done[members & fitted] - start[members & fitted]))
    blur = float(np.median(2 * (arrived - rq.sent)[members & fitted]))
    identified = b.size >= 5 and work > blur
    if identified:
        meds = np.median(rng.choice(b, (BOOTSTRAP, b.size)), axis=1)
        conc = Estimate(
            float(np.median(b)),
            *_percentile_ci(meds),
            f"Server-Timing: requests on a worker when one of {b.size:,} that waited got one "
            "(median), bootstrap",
        )
    elif b.size < 5:
        peak = float(busy[members].max()) if members.any() else 1.0
        conc = Estimate(
            peak, peak, math.inf, f"not identified: at most {peak:g} on workers at once"
        )
    else:
        conc = Estimate(
            math.nan,
            math.nan,
            math.inf,
            f"not identified: a time on a worker ({work * 1000:.3g} ms, median) below the "
            f"latency the target did not report ({blur * 1000:.3g} ms) cannot be lined up",
        )
    method = "Server-Timing service;dur, bootstrap"

    def mean_est(x: np.ndarray, what: str) -> Estimate:
        x = x[np.isfinite(x)]
        if x.size == 0:
            return Estimate(0.0, 0.0, 0.0, f"no {what} reported")
        idx = rng.integers(0, x.size, (BOOTSTRAP, x.size))
        return Estimate(float(x.mean()), *_percentile_ci(x[idx].mean(axis=1)), method)

    demands = {s: mean_est(rq.service_time[fitted & (rq.step == s)], "service time") for s in steps}
    gateway = None
    if "pay" in steps:
        sel = fitted & (rq.step == "pay") & np.isfinite(rq.gateway_time)
        gateway = mean_est(rq.gateway_time[sel], "gateway time")
        gateway = Estimate(
            gateway.value, gateway.low, gateway.high, "Server-Timing gateway;dur, bootstrap"
        )
    g = gateway.value if gateway is not None else 0.0
    return PoolFit(
        concurrency=conc,
        identified=identified,
        mean_demand=mean_est(rq.service_time[fitted & members], "service time"),
        intercepts={s: demands[s].value + (g if s == "pay" else 0.0) for s in steps},
        demands=demands,
        gateway=gateway,
    )


def _fit_step(
    rq: _Requests,
    step: str,
    sel: np.ndarray,
    load: np.ndarray,
    pool: PoolFit,
    timed: bool,
    rng: np.random.Generator,
) -> StepFit:
    """One step of a fitted pool: its demand's distribution (fitted to Server-Timing's
    service times, else to the latencies of requests that found a worker free, less
    the gateway, rescaled to the regression's demand), the latency model and its fit."""
    x, r = load[sel], rq.latency[sel]
    c = pool.concurrency.value
    demand = pool.demands[step]
    if timed:
        _, dist, shape = fit_service_times(rq.service_time[sel & np.isfinite(rq.service_time)], rng)
    else:
        g = pool.gateway.value if step == "pay" and pool.gateway is not None else 0.0
        low = x < c - 1 + 1e-9  # found a free worker: latency = demand (+ gateway)
        samples = (r[low] if low.sum() >= MIN_REQUESTS else r) - g
        _, dist, shape = fit_service_times(samples[samples > 0], rng)
        dist = _with_mean(dist, max(demand.value, 1e-6))
    a = pool.intercepts[step]
    predicted = a + pool.mean_demand.value * wait_factor(x, c)
    r2, mape = _goodness(x, r, predicted)
    return StepFit(
        step, int(sel.sum()), demand, dist, shape, pool.concurrency, pool.identified,
        x, r, predicted, r2, mape, (a, pool.mean_demand.value, c),
    )  # fmt: skip


def _with_mean(dist: dict[str, Any], mean: float) -> dict[str, Any]:
    """``dist`` rescaled to ``mean`` (its shape kept): the regression's demand, the
    low-load latencies' shape."""
    kind = dist["dist"]
    if kind == "constant":
        return {"dist": "constant", "value": round_fit(mean)}
    if kind == "lognormal":
        return {**dist, "median": round_fit(mean / math.exp(dist["sigma"] ** 2 / 2))}
    return {**dist, "mean": round_fit(mean)}
