"""Run the registry and assemble the report (one row per check, plus the [D]-statement coverage)."""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field

from ._core import REGISTRY, CheckResult, run_check
from .statements import D_STATEMENTS

CHECK_MODULES = (
    "checks_lemma_a",
    "checks_bernstein",
    "checks_conv",
    "checks_inverse",
    "checks_certs",
    "checks_gaussian",
    "checks_subsetsum",
    "checks_stats",
    "checks_graph",
    "checks_tight",
    "checks_tight_maxpool",
    "checks_sdp_fo",
    "checks_cnn_operators",
    "checks_mixed_pool_tc",
    "checks_tg_stage_norms",
    "checks_calibrated",
    "checks_sharp",
    "checks_scale",
    "checks_scale_fast",
    "checks_h1_api",
    "checks_budget_graph",
    "checks_budget_tf",
    "checks_figure_verdicts",
    "checks_h7_rules",
    "checks_sharp_sm",
    "checks_td_trace",
    "checks_lemma_moments",
    "checks_joint",
    "bridge",
)


def load_checks():
    for m in CHECK_MODULES:
        importlib.import_module(f"{__package__}.{m}")
    return list(REGISTRY)


@dataclass
class Report:
    results: list[CheckResult]
    coverage: list[dict] = field(default_factory=list)  # one row per [D] statement
    seconds: float = 0.0
    partial: bool = False  # a filtered run: coverage gaps are expected and not failures

    @property
    def missing(self) -> list[str]:
        return [c["id"] for c in self.coverage if c["status"] == "MISSING"]

    @property
    def counts(self) -> dict:
        out = {"PASS": 0, "FAIL": 0, "ERROR": 0, "SKIP": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    @property
    def ok(self) -> bool:
        c = self.counts
        return c["FAIL"] == 0 and c["ERROR"] == 0 and (self.partial or not self.missing)

    def summary(self) -> dict:
        c = self.counts
        by_method: dict[str, int] = {}
        by_kind: dict[str, int] = {}
        for r in self.results:
            by_method[r.method] = by_method.get(r.method, 0) + 1
            by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
        return {
            "checks": len(self.results),
            **{k.lower(): v for k, v in c.items()},
            "by_method": by_method,
            "by_kind": by_kind,
            "d_statements": len(self.coverage),
            "d_statements_covered": sum(1 for x in self.coverage if x["status"] != "MISSING"),
            "d_statements_missing": self.missing,
            "seconds": round(self.seconds, 2),
            "partial": self.partial,
            "ok": self.ok,
        }

    def as_dict(self) -> dict:
        return {"summary": self.summary(), "checks": [r.as_dict() for r in self.results],
                "d_statements": self.coverage}


def _coverage(results: list[CheckResult]) -> list[dict]:
    rows = []
    for s in D_STATEMENTS:
        cov = [r for r in results if s.id in r.covers]
        if not cov:
            status = "MISSING"
        elif any(r.status in ("FAIL", "ERROR") for r in cov):
            status = "FAIL"
        elif all(r.status == "SKIP" for r in cov):
            status = "SKIP"
        else:
            status = "PASS"
        rows.append({"id": s.id, "ref": s.ref, "statement": s.text, "checks": [r.id for r in cov],
                     "status": status})
    return rows


class _single_thread:
    """Small matrices only: BLAS/torch threading costs far more than it gains (and fights pytest -n 2)."""

    def __enter__(self):
        self._tp = None
        try:
            from threadpoolctl import threadpool_limits

            self._tp = threadpool_limits(1)
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
            pass
        self._torch = None
        try:
            import torch

            self._torch = torch.get_num_threads()
            torch.set_num_threads(1)
        except ImportError:  # pragma: no cover
            pass
        return self

    def __exit__(self, *exc):
        if self._tp is not None:
            self._tp.restore_original_limits()
        if self._torch is not None:
            import torch

            torch.set_num_threads(self._torch)
        return False


def run_all(select: str | None = None, kind: str | None = None) -> Report:
    """Run every registered check (optionally those whose id contains ``select`` / of one ``kind``)."""
    t0 = time.perf_counter()
    checks = load_checks()
    if select:
        checks = [c for c in checks if select in c.id]
    if kind:
        checks = [c for c in checks if c.kind == kind]
    with _single_thread():
        results = [run_check(c) for c in checks]
    rep = Report(results, _coverage(results), partial=bool(select or kind))
    rep.seconds = time.perf_counter() - t0
    return rep
