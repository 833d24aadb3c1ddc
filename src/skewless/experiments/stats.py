"""The statistics of an online experiment, on per-unit totals.

Why each was chosen: docs/experiments.md.

- The metric is a ratio: outcomes (the sum of the outcome's values, e.g. clicks) over exposures
  (answered requests). A unit's (user's) exposures are correlated, so the variance is taken over
  units with the delta method: for unit totals ``c_u`` (outcomes) and ``n_u`` (exposures) and
  ``R = sum(c)/sum(n)``, ``Var(R) = Var(c_u - R n_u) / (N mean(n)^2)``.
- Lift: the difference of the two ratios, normal approximation, two-sided; relative lift by the
  delta method.
- Sample ratio mismatch: chi-square (1 degree of freedom) of the units per variant against the
  configured split; p below 0.001 blocks every decision, since the assignment itself is broken.
- Sequential testing (optional): the mixture sequential probability ratio test (mSPRT; Johari,
  Pekelis and Walsh, "Always valid inference", 2017) with a normal mixing distribution whose
  standard deviation is the minimum detectable effect: its p-value stays valid however often it
  is looked at.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

SRM_ALPHA = 0.001
"""Below this p-value the split of units is a mismatch: the assignment is broken."""


def ratio_stats(clicks: np.ndarray, exposures: np.ndarray) -> dict[str, Any]:
    """Rate and its delta-method standard error over units."""
    units = len(exposures)
    total = float(exposures.sum())
    rate = float(clicks.sum()) / total if total else 0.0
    if units < 2:
        return {"units": units, "exposures": int(total), "outcomes": float(clicks.sum()),
                "rate": rate, "se": float("nan"), "unit_variance": float("nan")}  # fmt: skip
    linear = clicks - rate * exposures
    unit_variance = float(linear.var(ddof=1)) / float(exposures.mean()) ** 2
    return {
        "units": units,
        "exposures": int(total),
        "outcomes": float(clicks.sum()),
        "rate": rate,
        "se": math.sqrt(unit_variance / units),
        "unit_variance": unit_variance,  # of one unit's linearized rate: drives the sample size
    }


def lift(a: dict[str, Any], b: dict[str, Any], *, mde: float, z: float) -> dict[str, Any]:
    """Absolute and relative lift of ``b`` over ``a`` (each from :func:`ratio_stats`) with
    confidence intervals (``z``: the normal quantile), the two-sided p-value, and the mSPRT
    always-valid p-value with a mixing standard deviation of ``mde`` times ``a``'s rate."""
    diff = b["rate"] - a["rate"]
    se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    if not se > 0:  # too few units, or no variation at all
        return {"absolute": diff, "ci": [None, None], "relative": None, "relative_ci": [None, None],
                "p_value": None, "sequential_p_value": None}  # fmt: skip
    p_value = math.erfc(abs(diff) / se / math.sqrt(2))
    relative = rel_se = None
    if a["rate"] > 0:
        relative = b["rate"] / a["rate"] - 1
        rel_se = math.sqrt(
            b["se"] ** 2 / a["rate"] ** 2 + b["rate"] ** 2 * a["se"] ** 2 / a["rate"] ** 4
        )
    # mSPRT with a N(0, tau^2) mixture over the effect, tau = the MDE in absolute terms.
    tau2 = (mde * a["rate"]) ** 2 if a["rate"] > 0 else se**2
    variance = se**2
    log_lr = 0.5 * math.log(variance / (variance + tau2)) + diff**2 * tau2 / (
        2 * variance * (variance + tau2)
    )
    sequential = min(1.0, math.exp(-log_lr)) if log_lr < 700 else 0.0
    return {
        "absolute": diff,
        "ci": [diff - z * se, diff + z * se],
        "relative": relative,
        "relative_ci": [relative - z * rel_se, relative + z * rel_se]
        if relative is not None and rel_se is not None
        else [None, None],
        "p_value": p_value,
        "sequential_p_value": sequential,
    }


def srm(observed: list[int], split: int) -> dict[str, Any]:
    """Sample-ratio check of units per variant (production, candidate) against the candidate's
    configured share ``split`` (percent): chi-square, 1 degree of freedom."""
    total = sum(observed)
    shares = [(100 - split) / 100, split / 100]
    if total == 0 or min(shares) == 0:
        return {"observed_units": observed, "expected_share": shares, "chi2": None,
                "p_value": None, "mismatch": False}  # fmt: skip
    chi2 = sum((o - total * s) ** 2 / (total * s) for o, s in zip(observed, shares, strict=True))
    p_value = math.erfc(math.sqrt(chi2 / 2))  # chi-square survival, 1 degree of freedom
    return {"observed_units": observed, "expected_share": shares, "chi2": chi2,
            "p_value": p_value, "mismatch": p_value < SRM_ALPHA}  # fmt: skip


def sample_size(
    a: dict[str, Any], b: dict[str, Any], split: int, *, mde: float, alpha: float, power: float
) -> dict[str, Any]:
    """Units needed in total (and still to come) to detect a relative change of ``mde`` of
    ``a``'s rate at ``power`` and two-sided ``alpha``, from the variants' unit-level variances."""
    effect = mde * a["rate"]
    share = split / 100
    if not (effect > 0 and 0 < share < 1) or math.isnan(a["unit_variance"] + b["unit_variance"]):
        return {"mde_relative": mde, "units_needed": None, "units_more": None}
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    # Total units so that Var(diff) = v_a/(N(1-s)) + v_b/(N s) = (effect / z)^2.
    needed = z**2 * (a["unit_variance"] / (1 - share) + b["unit_variance"] / share) / effect**2
    needed_units = math.ceil(needed)
    return {
        "mde_relative": mde,
        "units_needed": needed_units,
        "units_more": max(0, needed_units - a["units"] - b["units"]),
    }
