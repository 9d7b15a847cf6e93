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
  waited got one (a worker was then just freed: every worker was busy).
- **Response times only** (any target, any table): the regression of Kraft,
  Pacheco-Sanchez, Casale & Dawson, "Estimating Service Resource Consumption
  From Response Time Measurements", VALUETOOLS 2009 (section 3: a request's
  response time is its own demand plus the demand of the requests it finds in
  the station). For a FCFS station of ``c`` servers with exponential demand
  ``D``, a request that finds ``n`` others in the station waits for
  ``max(0, n - c + 1)`` departures at rate ``c / D``::

      E[R | n] = G + D * (1 + max(0, n - c + 1) / c)

  (the paper's multi-server form). ``G`` is a delay outside the workers (the
  payment gateway: pay only, else 0). ``n`` is counted from the table: the
  requests of the same pool sent before and not yet answered. For each ``c``
  the model is linear in ``D`` (and ``G``); ``c`` is the one with the least
  squared error. At low load (``n < c``) it says ``R = G + D``: the demand is the
  low-load latency. ``c`` is identified only where the load exceeded it; a replay
  that never queued leaves it unknown (then the scenario's value is kept, and
  said so).

Payment failures: the scenario's own law, ``p = min(1, failure_prob +
failure_growth * max(0, L - load_knee))`` with ``L`` the pay pool's occupancy
(requests in service and queued per worker) a payment met, fitted by maximum
likelihood over the answered payments (402 declined, 201 paid); kept flat (one
probability with its exact binomial interval) unless the growth is significant
(likelihood ratio, 5%).

Every estimate carries a 95% interval: percentile bootstrap over requests
(:data:`BOOTSTRAP`, seeded), Clopper-Pearson for a flat failure probability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from flashsale.outcome import STEP, Outcome

__all__ = [
    "BOOTSTRAP",
    "MIN_REQUESTS",
    "STEPS",
    "Calibration",
    "CalibrationError",
    "Estimate",
    "PaymentFit",
    "StepFit",
    "calibrate_outcomes",
    "fit_failures",
    "fit_service_times",
    "fit_station",
    "in_flight_at",
    "mmc_factor",
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
    ``G + D * mmc_factor(load, c)`` for it, with ``model`` = ``(G, D, c)``.
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


def mmc_factor(n: np.ndarray, c: float) -> np.ndarray:
    """``1 + max(0, n - c + 1) / c``: a FCFS ``c``-server station's response time in
    units of the demand, for a request finding ``n`` others (Kraft et al. 2009)."""
    return 1.0 + np.maximum(0.0, n - c + 1.0) / c


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
    or gamma (2), or constant when the spread is under 5% of the mean. Returns
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
        return mean, {"dist": "constant", "value": _r(mean.value)}, None
    logx = np.log(x)
    mu, sigma = float(logx.mean()), float(logx.std())
    ll_exp = float(np.sum(stats.expon.logpdf(x, scale=x.mean())))
    ll_ln = float(np.sum(stats.norm.logpdf(logx, mu, sigma) - logx)) if sigma > 0 else -math.inf
    shape_g, _, scale_g = stats.gamma.fit(x, floc=0)
    ll_g = float(np.sum(stats.gamma.logpdf(x, shape_g, scale=scale_g)))
    aic = {"exponential": 2 - 2 * ll_exp, "lognormal": 4 - 2 * ll_ln, "gamma": 4 - 2 * ll_g}
    best = min(aic, key=lambda k: aic[k])
    if best == "exponential":
        return mean, {"dist": "exponential", "mean": _r(mean.value)}, None
    if best == "lognormal":
        s_lo, s_hi = _percentile_ci(np.log(boots).std(axis=1))
        shape = Estimate(sigma, s_lo, s_hi, "lognormal by maximum likelihood (AIC), bootstrap")
        return mean, {"dist": "lognormal", "median": _r(math.exp(mu)), "sigma": _r(sigma)}, shape
    cvs = boots.std(axis=1, ddof=1) / means
    c_lo, c_hi = _percentile_ci(cvs)
    g_cv = 1 / math.sqrt(shape_g)
    return (
        mean,
        {"dist": "gamma", "mean": _r(mean.value), "cv": _r(min(10.0, max(0.001, g_cv)))},
        Estimate(g_cv, c_lo, c_hi, "gamma cv by maximum likelihood (AIC), bootstrap"),
    )


def _r(v: float) -> float:
    """A fitted value with 4 significant digits: more would claim a precision no
    interval here has."""
    return float(f"{v:.4g}")


# --------------------------------------------------------------- the regression


def _profile(
    n: np.ndarray, r: np.ndarray, w: np.ndarray, cs: np.ndarray, intercept: bool
) -> tuple[float, float, float]:
    """Least squares of ``r ~ G + D * mmc_factor(n, c)`` over the candidate ``cs``,
    weighted by ``w`` (bootstrap counts). Returns ``(c, D, G)`` of the best ``c``."""
    best = (math.inf, float(cs[0]), 0.0, 0.0)
    sw, swr, swrr = w.sum(), (w * r).sum(), (w * r * r).sum()
    x_all = 1.0 + np.maximum(0.0, n[None, :] - cs[:, None] + 1.0) / cs[:, None]
    swx = x_all @ w
    swxx = (x_all * x_all) @ w
    swxr = x_all @ (w * r)
    for i, c in enumerate(cs):
        if intercept:
            det = sw * swxx[i] - swx[i] ** 2
            if det <= 1e-12 * max(1.0, sw * swxx[i]):  # no load beyond c: G and D confounded
                d, g = swxr[i] / swxx[i], 0.0
            else:
                d = (sw * swxr[i] - swx[i] * swr) / det
                g = (swr - d * swx[i]) / sw
                if g < 0:  # a delay outside the workers is never negative
                    d, g = swxr[i] / swxx[i], 0.0
                elif d < 0:
                    d, g = 0.0, swr / sw
        else:
            d, g = swxr[i] / swxx[i], 0.0
        sse = (
            swrr - 2 * d * swxr[i] - 2 * g * swr + d * d * swxx[i] + 2 * d * g * swx[i] + g * g * sw
        )
        if sse < best[0] - 1e-15:
            best = (sse, float(c), float(d), float(g))
    return best[1], best[2], best[3]


def fit_station(
    load: np.ndarray,
    latency: np.ndarray,
    rng: np.random.Generator,
    *,
    intercept: bool = False,
    c_max: int | None = None,
) -> tuple[Estimate, Estimate, Estimate | None, bool]:
    """Fit ``latency ~ G + D * mmc_factor(load, c)`` (Kraft et al. 2009, module
    docstring): ``(concurrency c, demand D, delay G or None, identified)``, each
    with a bootstrap interval over requests. ``load`` counts the other requests of
    the pool in flight at each send; ``c`` runs over 1..``c_max`` (default: the
    highest load + 1). ``identified`` is False when the best ``c`` is above every
    load seen: nothing queued, ``c`` is only known to be at least that.
    """
    top = int(load.max()) + 1 if load.size else 1
    hi_c = max(1, min(top, c_max if c_max is not None else top))
    cs = np.unique(np.round(np.geomspace(1, hi_c, min(hi_c, 200)))).astype(float)
    ones = np.ones_like(latency)
    c, d, g = _profile(load, latency, ones, cs, intercept)
    identified = c <= load.max()
    boots = np.empty((BOOTSTRAP, 3))
    for b in range(BOOTSTRAP):
        w = np.bincount(rng.integers(0, latency.size, latency.size), minlength=latency.size)
        boots[b] = _profile(load, latency, w.astype(float), cs, intercept)
    method = "response-time regression (Kraft et al. 2009), bootstrap"
    c_lo, c_hi = _percentile_ci(boots[:, 0])
    d_lo, d_hi = _percentile_ci(boots[:, 1])
    conc = Estimate(c, c_lo, c_hi, method)
    demand = Estimate(d, d_lo, d_hi, method)
    delay = None
    if intercept:
        g_lo, g_hi = _percentile_ci(boots[:, 2])
        delay = Estimate(g, g_lo, g_hi, method + "; constant: the regression gives its mean only")
    return conc, demand, delay, identified


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


def _fail_ll(params: Sequence[float], load: np.ndarray, y: np.ndarray, knee: float) -> float:
    p0, g = params
    p = np.clip(p0 + g * np.maximum(0.0, load - knee), 1e-9, 1 - 1e-9)
    return -float(np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _fit_growth(load: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Maximum likelihood ``(p0, growth, knee, -loglik)`` over knees at the load's deciles."""
    best = (0.0, 0.0, 0.0, math.inf)
    for knee in np.unique(np.quantile(load, np.linspace(0, 0.9, 10))):
        res = optimize.minimize(
            _fail_ll,
            x0=[max(1e-4, y.mean() / 2), 0.01],
            args=(load, y, float(knee)),
            bounds=[(0.0, 1.0), (0.0, 1e6)],
            method="L-BFGS-B",
        )
        if res.fun < best[3]:
            best = (float(res.x[0]), float(res.x[1]), float(knee), float(res.fun))
    return best


def fit_failures(
    load: np.ndarray, declined: np.ndarray, rng: np.random.Generator
) -> tuple[Estimate, Estimate | None, float | None]:
    """The failure law from payments the gateway answered: ``load`` the occupancy each
    met (requests in the pay pool per worker), ``declined`` True for a 402. Returns
    ``(failure_prob, failure_growth, load_knee)``: flat (growth and knee None) with a
    Clopper-Pearson interval unless a growth above a knee is significant by the
    likelihood ratio (chi-squared, 2 degrees of freedom, 5%); then bootstrap intervals."""
    y = declined.astype(float)
    m, k = y.size, int(y.sum())
    lo = float(stats.beta.ppf(0.025, k, m - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(0.975, k + 1, m - k)) if k < m else 1.0
    flat = Estimate(k / m if m else 0.0, lo, hi, f"{k} declined of {m:,} payments, Clopper-Pearson")
    if k < 10 or m - k < 10 or np.ptp(load) == 0:
        return flat, None, None
    p0 = k / m
    ll0 = -(k * math.log(p0) + (m - k) * math.log1p(-p0))
    g_p0, g_g, knee, nll = _fit_growth(load, y)
    if stats.chi2.sf(2 * (ll0 - nll), 2) >= 0.05 or g_g <= 0:
        return flat, None, None
    boots = np.empty((min(BOOTSTRAP, 100), 2))
    for b in range(boots.shape[0]):
        i = rng.integers(0, m, m)
        res = optimize.minimize(
            _fail_ll,
            x0=[g_p0, g_g],
            args=(load[i], y[i], knee),
            bounds=[(0, 1), (0, 1e6)],
            method="L-BFGS-B",
        )
        boots[b] = res.x
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
    outcomes: Sequence[Outcome], service: Mapping[str, Any], *, seed: int = _SEED
) -> Calibration:
    """Fit the service model to a replay's replications (module docstring).

    ``service`` is the replayed scenario's ``[service]`` table (its pools say which
    steps share workers). Raises CalibrationError when a step has fewer than
    :data:`MIN_REQUESTS` answered requests.
    """
    rng = np.random.default_rng(seed)
    rq = _Requests.of(outcomes)
    served = rq.served()
    pools = pools_of(service)
    pool_of = {s: name for name, steps in pools.items() for s in steps}
    timed = rq.timed()
    is_pay = rq.step == "pay"
    reached = is_pay & np.isin(rq.status, _GATEWAY_ANSWERS)
    for s in STEPS:
        k = int((served & (rq.step == s) & (~is_pay | reached)).sum())
        if k < MIN_REQUESTS:
            raise CalibrationError(
                f"{k} answered {s} request{'s' if k != 1 else ''}: at least {MIN_REQUESTS} "
                "are needed to fit a step (replay more buyers: a larger --scale)"
            )
    gw = np.where(np.isfinite(rq.gateway_time), rq.gateway_time, 0.0)
    fits: dict[str, StepFit] = {}
    gateway: Estimate | None = None
    gateway_dist: dict[str, Any] = {"dist": "constant", "value": 0.0}
    occupancy_end = rq.sent + rq.latency - gw  # off the workers while the gateway answers
    if timed:
        gsel = reached & np.isfinite(rq.gateway_time)
        if int(gsel.sum()) >= MIN_REQUESTS and float(np.nanmean(rq.gateway_time[gsel])) > 0:
            gateway, gateway_dist, _ = fit_service_times(rq.gateway_time[gsel], rng)
            gateway = Estimate(
                float(rq.gateway_time[gsel].mean()),
                *_percentile_ci(
                    rng.choice(rq.gateway_time[gsel], (BOOTSTRAP, int(gsel.sum()))).mean(axis=1)
                ),
                "Server-Timing gateway;dur, bootstrap",
            )
    else:
        # the pay regression's intercept is the gateway: fit pay first, with its requests
        # counted in flight for their whole latency, then again without the gateway's part
        g_pool = pools[pool_of["pay"]]
        members = np.isin(rq.step, g_pool)
        load = _others_in_flight(rq, members, rq.sent, rq.sent, occupancy_end)
        sel = served & reached
        _, _, delay, _ = fit_station(load[sel], rq.latency[sel], rng, intercept=True)
        assert delay is not None
        if delay.low > 0:
            gateway = delay
            gateway_dist = {"dist": "constant", "value": _r(delay.value)}
            occupancy_end = rq.sent + rq.latency - np.where(reached, delay.value, 0.0)
        else:  # an intercept not above 0: no time outside the workers to speak of
            gateway = Estimate(0.0, 0.0, delay.high, delay.method + "; not above 0: none")
    for steps in pools.values():
        members = np.isin(rq.step, steps)
        load = _others_in_flight(rq, members, rq.sent, rq.sent, occupancy_end)
        conc_timed = _timed_concurrency(rq, members & served, rng) if timed else None
        for s in steps:
            sel = served & (rq.step == s) & (~is_pay | reached)
            fits[s] = _fit_step(rq, s, sel, load, conc_timed, gateway if s == "pay" else None, rng)
    pay_pool = np.isin(rq.step, pools[pool_of["pay"]])
    c_pay = fits["pay"].concurrency
    workers = (
        c_pay.value
        if c_pay is not None and fits["pay"].identified
        else float(_workers_of(service, pool_of["pay"]))
    )
    load = (
        _others_in_flight(rq, pay_pool, rq.sent, rq.sent, occupancy_end)[served & reached] / workers
    )
    declined = rq.status[served & reached] == _DECLINED
    failure_prob, failure_growth, knee = fit_failures(load, declined, rng)
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
    return Calibration("server_timing" if timed else "response_times", fits, pools, payment)


def _workers_of(service: Mapping[str, Any], pool: str) -> int:
    if pool == "default":
        return int(service.get("workers", 64))
    return int(service["pools"][pool].get("workers", service.get("workers", 64)))


def _timed_concurrency(
    rq: _Requests, members: np.ndarray, rng: np.random.Generator
) -> tuple[Estimate | None, float]:
    """From Server-Timing: ``(estimate or None, most requests seen on workers at once)``.

    A request that waited got a worker the moment one was freed: every other worker
    was busy then, so the requests on a worker at its start, itself included, are the
    pool's concurrency. The median over the requests that waited, bootstrap interval.
    """
    qw = np.where(np.isfinite(rq.queue_wait), rq.queue_wait, 0.0)
    st = np.where(np.isfinite(rq.service_time), rq.service_time, 0.0)
    start = rq.sent + qw
    end = start + st
    busy = _others_in_flight(rq, members, start, start, end) + 1
    peak = float(busy[members].max()) if members.any() else 0.0
    waited = members & (qw > 1e-3)
    b = busy[waited]
    if b.size < 5:
        return None, peak
    meds = np.median(rng.choice(b, (BOOTSTRAP, b.size)), axis=1)
    lo, hi = _percentile_ci(meds)
    method = (
        f"Server-Timing: requests on a worker when one of {b.size:,} that waited got one "
        "(median), bootstrap"
    )
    return Estimate(float(np.median(b)), lo, hi, method), peak


def _fit_step(
    rq: _Requests,
    step: str,
    sel: np.ndarray,
    load: np.ndarray,
    timed: tuple[Estimate | None, float] | None,
    gateway: Estimate | None,
    rng: np.random.Generator,
) -> StepFit:
    """One step: demand and shape, concurrency, latency model against load."""
    x, r = load[sel], rq.latency[sel]
    if timed is not None:
        demand, dist, shape = fit_service_times(
            rq.service_time[sel & np.isfinite(rq.service_time)], rng
        )
        mean_demand = float(np.nanmean(rq.service_time[sel]))
        conc, peak = timed
        identified = conc is not None
        c = conc.value if conc is not None else max(peak, float(x.max()) + 1)
        g = gateway.value if gateway is not None else 0.0
    else:
        outside = gateway is not None and gateway.value > 0
        conc, demand_reg, delay, identified = fit_station(x, r, rng, intercept=outside)
        g = delay.value if delay is not None else 0.0
        c = conc.value
        mean_demand = demand_reg.value
        low = x < c - 1 + 1e-9  # found a free worker: latency = demand (+ gateway)
        samples = r[low] - g if low.sum() >= MIN_REQUESTS else r - g
        _, dist, shape = fit_service_times(samples[samples > 0], rng)
        dist = _with_mean(dist, mean_demand)
        demand = demand_reg
        if not identified:
            conc = Estimate(
                c,
                c,
                math.inf,
                f"not identified: the replay never queued (at most {int(x.max()) + 1} in flight)",
            )
    predicted = g + mean_demand * mmc_factor(x, c)
    r2, mape = _goodness(x, r, predicted)
    return StepFit(
        step,
        int(sel.sum()),
        demand,
        dist,
        shape,
        conc,
        identified,
        x,
        r,
        predicted,
        r2,
        mape,
        (g, mean_demand, c),
    )


def _with_mean(dist: dict[str, Any], mean: float) -> dict[str, Any]:
    """``dist`` rescaled to ``mean`` (its shape kept): the regression's demand, the
    low-load latencies' shape."""
    kind = dist["dist"]
    if kind == "constant":
        return {"dist": "constant", "value": _r(mean)}
    if kind == "lognormal":
        return {**dist, "median": _r(mean / math.exp(dist["sigma"] ** 2 / 2))}
    return {**dist, "mean": _r(mean)}


# ------------------------------------------------------- the calibrated scenario


def _commented(value: Any, note: str) -> Any:
    """A tomlkit item carrying ``note`` as its end-of-line comment."""
    import tomlkit

    if isinstance(value, Mapping):
        item: Any = tomlkit.inline_table()
        item.update(value)
    else:
        item = tomlkit.item(value)
    item.comment(note)
    return item


def _pool_workers(
    cal: Calibration, steps: Sequence[str]
) -> tuple[Estimate | None, list[tuple[str, ...]]]:
    """The pool's concurrency (the identified step fit with the narrowest interval) and
    the pool split where the steps' intervals are disjoint from it."""
    known = [
        (s, f.concurrency)
        for s in steps
        if (f := cal.steps[s]).identified and f.concurrency is not None
    ]
    if not known:
        return None, [tuple(steps)]
    _, best = min(known, key=lambda k: k[1].high - k[1].low)
    apart = tuple(s for s, e in known if e.high < best.low or e.low > best.high)
    together = tuple(s for s in steps if s not in apart)
    return best, [together, *((s,) for s in apart)]


def calibrated_service(
    cal: Calibration,
    base: Mapping[str, Any],
    *,
    capacity_ratio: float = 1.0,
    pools_supported: bool = True,
) -> Any:
    """The ``[service]`` table (tomlkit) of the calibrated scenario.

    ``base`` is the ``[service]`` table it replaces: its settings that no table
    measures (queue limits and timeouts, the cart hold, the gateway's timeout) are
    kept. Fitted workers are multiplied by ``capacity_ratio`` (a scenario with
    more workers than the replayed one, ``--for``). Steps whose concurrency differs
    (disjoint intervals) get pools of their own when ``pools_supported``.
    """
    import tomlkit

    svc = tomlkit.table()
    default_steps = cal.pools.get("default", ())
    est, parts = _pool_workers(cal, default_steps) if default_steps else (None, [()])
    named_pools: dict[str, tuple[tuple[str, ...], Estimate | None]] = {}
    for name, steps in cal.pools.items():
        if name == "default":
            continue
        e, p = _pool_workers(cal, steps)
        named_pools[name] = (p[0], e)
        for extra in p[1:]:
            named_pools[extra[0]] = (extra, cal.steps[extra[0]].concurrency)
    if pools_supported:
        for extra in parts[1:]:
            named_pools[extra[0]] = (extra, cal.steps[extra[0]].concurrency)
    scaled = f" x {capacity_ratio:.4g} (the target scenario's workers / the replay's)"
    ratio_note = scaled if capacity_ratio != 1 else ""

    def workers_item(e: Estimate | None, kept: int) -> Any:
        if e is None:
            return _commented(kept, "kept: concurrency not identified (the replay never queued)")
        n = max(1, round(e.value * capacity_ratio))
        return _commented(n, f"fitted {e.describe()}{ratio_note}")

    svc.add("workers", workers_item(est, int(base.get("workers", 64))))
    for key in ("queue_limit", "queue_timeout_s", "cart_hold_s"):
        if key in base:
            svc.add(key, _commented(base[key], "kept: not measured"))
    step_s = tomlkit.table()
    for s in STEPS:
        f = cal.steps[s]
        shape = ""
        if f.shape is not None:
            shape = f"; {'sigma' if f.dist['dist'] == 'lognormal' else 'cv'} {f.shape.describe()}"
        note = f"mean demand {f.demand.describe('s')}{shape}"
        step_s.add(s, _commented(f.dist, note))
    svc.add("step_s", step_s)
    pay = tomlkit.table()
    pf, base_pay = cal.payment, base.get("payment", {})
    pay.add("failure_prob", _commented(_r(pf.failure_prob.value), pf.failure_prob.describe()))
    if pf.failure_growth is not None and pf.load_knee is not None:
        pay.add(
            "failure_growth", _commented(_r(pf.failure_growth.value), pf.failure_growth.describe())
        )
        pay.add("load_knee", _commented(_r(pf.load_knee), "fitted: the load where failures start"))
    else:
        pay.add(
            "failure_growth", _commented(0.0, "no growth with load found (likelihood ratio, 5%)")
        )
    gw_note = pf.gateway.describe("s") if pf.gateway is not None else "no gateway time reported"
    pay.add("gateway_s", _commented(pf.gateway_dist, f"mean {gw_note}"))
    if "timeout_s" in base_pay:
        pay.add("timeout_s", _commented(base_pay["timeout_s"], "kept: not measured"))
    svc.add("payment", pay)
    if named_pools and pools_supported:
        base_pools = base.get("pools") or {}
        pools = tomlkit.table(is_super_table=True)
        for name, (steps, e) in named_pools.items():
            kept = base_pools.get(name, {})
            t = tomlkit.table()
            t.add("steps", tomlkit.item(list(steps)))
            t.add("workers", workers_item(e, int(kept.get("workers", base.get("workers", 64)))))
            for key in ("queue_limit", "queue_timeout_s"):
                if key in kept or key in base:
                    t.add(key, _commented(kept.get(key, base.get(key)), "kept: not measured"))
            pools.add(name, t)
        svc.add("pools", pools)
    return svc


def calibrated_scenario(
    text: str, cal: Calibration, *, capacity_ratio: float = 1.0, header: str = ""
) -> str:
    """``text`` (a scenario's TOML) with its ``[service]`` table replaced by the fitted
    one (:func:`calibrated_service`), ``header`` as comment lines at the top."""
    import tomlkit

    from flashsale.scenario import Service

    doc = tomlkit.parse(text)
    base = doc.get("service", {}).unwrap() if "service" in doc else {}
    doc["service"] = calibrated_service(
        cal,
        base,
        capacity_ratio=capacity_ratio,
        pools_supported="pools" in Service.model_fields,
    )
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + doc.as_string()
