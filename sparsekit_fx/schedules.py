"""Sparsity schedules: pure functions of a step *tensor*.

A schedule is a small frozen dataclass; calling it with a step tensor returns
the target sparsity (fraction of blocks pruned) as a tensor, and
:meth:`Schedule.nnz` turns that into blocks kept per scope. Because the step
and the result are tensors, a compiled training step that calls a schedule
compiles once and never recompiles as sparsity grows (pass the step as a
tensor, e.g. ``torch.tensor(step)``: a Python int would be specialised on).

* :func:`constant_schedule` — the same sparsity at every step.
* :func:`one_shot_schedule` — 0 before ``at``, then the target.
* :func:`polynomial_schedule` — gradual pruning (Zhu & Gupta, 2017;
  jaxpruner's ``PolynomialSchedule``)::

      s(t) = s_f + (s_i - s_f) * (1 - clamp((t_q - begin) / (end - begin), 0, 1)) ** power

  where ``t_q`` is ``t`` rounded down to a multiple of ``every`` steps after
  ``begin`` (sparsity moves only when masks would be updated) and ``t_q = end``
  once ``t >= end``.
* :func:`cubic_schedule` — ``power=3``. With ``every=1`` it gives the values of
  PyTorch's ``torch.ao.pruning.scheduler.CubicSL`` with ``init_sl=s_i``,
  ``init_t=begin`` and ``delta_t * total_t = end - begin``.

Before ``begin`` the polynomial schedule gives ``initial`` (or 0 with
``initially_zero=True``, as in CubicSL).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .errors import ArgumentError, describe
from .select import sparsity_to_nnz

__all__ = [
    "Schedule",
    "ConstantSchedule",
    "OneShotSchedule",
    "PolynomialSchedule",
    "constant_schedule",
    "one_shot_schedule",
    "polynomial_schedule",
    "cubic_schedule",
]


def _fraction(x: Any, where: str, arg: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not 0.0 <= float(x) <= 1.0:
        raise ArgumentError(describe(where, arg, "a number in [0, 1] (fraction of blocks pruned)", repr(x),
                                     "pass e.g. 0.5."))
    return float(x)


def _step_int(x: Any, where: str, arg: str, lo: int = 0) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or int(x) < lo:
        raise ArgumentError(describe(where, arg, f"an int >= {lo}", repr(x), f"pass a step count >= {lo}."))
    return int(x)


def _as_step(step: Any, where: str) -> Tensor:
    if isinstance(step, Tensor):
        if step.is_floating_point() or step.is_complex() or step.dtype == torch.bool or step.ndim != 0:
            raise ArgumentError(describe(where, "step", "a 0-d integer tensor", f"{step.dtype}{tuple(step.shape)}",
                                         "pass torch.tensor(step) (int64)."))
        return step
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ArgumentError(describe(where, "step", "a 0-d integer tensor (or an int)", repr(step),
                                     "pass torch.tensor(step)."))
    return torch.tensor(int(step), dtype=torch.int64)


class Schedule:
    """Base of schedules: ``schedule(step) -> sparsity`` as a float32 0-d tensor."""

    def __call__(self, step: Any) -> Tensor:
        """Pure: the target sparsity at ``step`` (a 0-d integer tensor; an int is accepted eagerly)."""
        t = _as_step(step, type(self).__name__)
        return self._value(t).to(torch.float32)

    def nnz(self, step: Any, scope: Any) -> Tensor:
        """Pure: blocks kept per scope of ``scope`` at ``step``, an int64 0-d tensor."""
        return sparsity_to_nnz(scope, self(step))

    def _value(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantSchedule(Schedule):
    """The same sparsity at every step (see :func:`constant_schedule`)."""

    sparsity: float

    def _value(self, t: Tensor) -> Tensor:
        return torch.full((), self.sparsity, dtype=torch.float64, device=t.device)


@dataclass(frozen=True)
class OneShotSchedule(Schedule):
    """0 before step ``at``, ``sparsity`` from it on (see :func:`one_shot_schedule`)."""

    sparsity: float
    at: int

    def _value(self, t: Tensor) -> Tensor:
        s = torch.full((), self.sparsity, dtype=torch.float64, device=t.device)
        return torch.where(t >= self.at, s, torch.zeros_like(s))


@dataclass(frozen=True)
class PolynomialSchedule(Schedule):
    """Gradual pruning from ``initial`` to ``final`` (see :func:`polynomial_schedule`)."""

    final: float
    begin: int
    end: int
    initial: float = 0.0
    power: float = 3.0
    every: int = 1
    initially_zero: bool = False

    def _value(self, t: Tensor) -> Tensor:
        t64 = t.to(torch.int64)
        since = (t64 - self.begin).clamp(min=0)
        quant = torch.div(since, self.every, rounding_mode="floor") * self.every
        span = self.end - self.begin
        progress = torch.where(t64 >= self.end, torch.ones((), dtype=torch.float64, device=t.device),
                               (quant.to(torch.float64) / span).clamp(0.0, 1.0))
        s = self.final + (self.initial - self.final) * (1.0 - progress) ** self.power
        if self.initially_zero:
            s = torch.where(t64 < self.begin, torch.zeros_like(s), s)
        return s


def constant_schedule(sparsity: float) -> ConstantSchedule:
    """Pure: a schedule returning ``sparsity`` at every step.

    Raises:
        ArgumentError: ``sparsity`` is not in [0, 1].
    """
    return ConstantSchedule(_fraction(sparsity, "constant_schedule", "sparsity"))


def one_shot_schedule(sparsity: float, at: int = 0) -> OneShotSchedule:
    """Pure: a schedule that prunes to ``sparsity`` at step ``at`` (0 before).

    Raises:
        ArgumentError: ``sparsity`` not in [0, 1] or ``at`` not an int >= 0.
    """
    where = "one_shot_schedule"
    return OneShotSchedule(_fraction(sparsity, where, "sparsity"), _step_int(at, where, "at"))


def polynomial_schedule(final: float, *, begin: int, end: int, initial: float = 0.0, power: float = 3.0,
                        every: int = 1, initially_zero: bool = False) -> PolynomialSchedule:
    """Pure: gradual pruning: ``initial`` at ``begin`` to ``final`` at ``end`` along ``(1 - progress) ** power``.

    Args:
        final: Sparsity reached at ``end`` and kept after it.
        begin: First step of the ramp.
        end: Step at which ``final`` is reached (``> begin``).
        initial: Sparsity at ``begin``.
        power: Exponent of the ramp (3 = Zhu & Gupta's cubic).
        every: Sparsity changes only every ``every`` steps after ``begin``
            (the mask-update frequency, jaxpruner's ``update_freq``).
        initially_zero: Give 0 (not ``initial``) before ``begin``.

    Raises:
        ArgumentError: A fraction is not in [0, 1], a step is negative,
            ``end <= begin``, ``every < 1`` or ``power <= 0``.
    """
    where = "polynomial_schedule"
    final = _fraction(final, where, "final")
    initial = _fraction(initial, where, "initial")
    begin = _step_int(begin, where, "begin")
    end = _step_int(end, where, "end", lo=begin + 1)
    every = _step_int(every, where, "every", lo=1)
    if isinstance(power, bool) or not isinstance(power, numbers.Real) or not float(power) > 0:
        raise ArgumentError(describe(where, "power", "a number > 0", repr(power), "use 3 for the cubic schedule."))
    return PolynomialSchedule(final, begin, end, initial, float(power), every, bool(initially_zero))


def cubic_schedule(final: float, *, begin: int, end: int, initial: float = 0.0, every: int = 1,
                   initially_zero: bool = False) -> PolynomialSchedule:
    """Pure: :func:`polynomial_schedule` with ``power=3`` (Zhu & Gupta; PyTorch's CubicSL)."""
    return polynomial_schedule(final, begin=begin, end=end, initial=initial, power=3.0, every=every,
                               initially_zero=initially_zero)
