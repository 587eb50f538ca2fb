"""The gateway's drift watch: one `parity.gateway.drift.DriftMonitor` per routed task with a shadow rate.

A monitor is built on first use, replaced when the task's policy changes (a new certificate also clears a persisted
rollback), and stopped when the task's route is refused. Its baseline and judge calls are priced and recorded as
route "shadow"; `parity_gateway_task_rolled_back` shows which tasks are rolled back; GET /v1/parity/drift serves
every watched task's `status()`.
"""

from __future__ import annotations

import contextlib
import threading
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from parity.api.handlers import error_response
from parity.api.ids import request_id as new_request_id
from parity.gateway.deferral import Authenticate
from parity.gateway.metrics import GatewayMetrics
from parity.gateway.recorder import GatewayRecorder, Record
from parity.gateway.upstream import Upstream
from parity.policy import TaskPolicy

if TYPE_CHECKING:  # the e-process needs numpy: loaded when the first routed task is watched
    from parity.gateway.drift import DriftMonitor

log = logging.getLogger("parity.gateway.drift")


class DriftWatch:
    """The gateway's drift monitors, one per routed task with a shadow rate (see the module docstring).

    Monitors call the `upstream`; their baseline and judge calls are recorded by `recorder` as route "shadow", and
    `metrics` shows which tasks are rolled back. `seed` seeds each monitor's sampler; `options` are `DriftMonitor`
    keywords (via, batch_size, ...); with a `state_dir`, each task's rollback is kept in drift-<task>.json there."""

    def __init__(self, upstream: Upstream, recorder: GatewayRecorder, metrics: GatewayMetrics, *,
                 seed: int | None = None, options: Mapping[str, Any] | None = None, state_dir: str | None = None,
                 shared: Any = None, poll_s: float = 1.0):
        self.shared = shared  # a parity.ledger.state.SharedDriftState: rollbacks seen and obeyed by every replica
        self.poll_s = poll_s
        self._shared_rollbacks: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.upstream = upstream
        self.recorder = recorder
        self.metrics = metrics
        self.seed = seed
        self.options = dict(options or {})
        self.state_dir = state_dir
        self._monitors: dict[str, DriftMonitor] = {}

    @property
    def monitors(self) -> dict[str, DriftMonitor]:
        """task -> its monitor, for the tasks watched now."""
        return dict(self._monitors)

    def monitor_for(self, policy: TaskPolicy) -> DriftMonitor | None:
        """The task's monitor (route mode with a shadow rate), created on first use; None for other tasks."""
        if policy.mode != "route" or policy.shadow_rate <= 0:
            return None
        monitor = self._monitors.get(policy.task)
        if monitor is not None and monitor.policy != policy:
            # the policy file changed for this task (a new proof, a new candidate or prompt): watch it afresh
            self._retire(monitor, reset=_certificate_id(monitor.policy) != _certificate_id(policy))
            monitor = None
        if monitor is None:
            options = {"sampler_seed": self.seed, **self.options}
            if self.state_dir and "state_path" not in options:
                options["state_path"] = str(Path(self.state_dir) / f"drift-{_safe_name(policy.task)}.json")
            from parity.gateway.drift import DriftMonitor  # statistics load only once a task is watched

            monitor = DriftMonitor(
                policy, self.upstream, on_rollback=self._on_rollback,
                on_exchange=lambda params, message, purpose, batch: self._record(policy, params, message, purpose, batch),
                **options,
            )
            self._monitors[policy.task] = monitor
            self._adopt(monitor)
            self.metrics.rolled_back.labels(policy.task).set(1 if monitor.rolled_back(policy.task) else 0)
        return monitor

    def forget(self, tasks: Iterable[str]) -> None:
        """Stop watching `tasks` (their routes were refused); a persisted rollback stays: only a new certificate
        clears it."""
        for task in tasks:
            monitor = self._monitors.pop(task, None)
            if monitor is not None:
                self._retire(monitor, reset=False)

    def _retire(self, monitor: DriftMonitor, *, reset: bool) -> None:
        """Stop a monitor whose policy was replaced; a new certificate also clears a persisted rollback."""
        if reset:
            with contextlib.suppress(Exception):
                monitor.reset()
            log.info("task %s has a new policy: drift rollback cleared, watching afresh", monitor.task)
        with contextlib.suppress(Exception):
            monitor.close()
        self.metrics.rolled_back.labels(monitor.task).set(0)

    def _on_rollback(self, task: str, reason: str, evidence: dict[str, Any]) -> None:
        self.metrics.rolled_back.labels(task).set(1)
        log.warning("task %s rolled back to its baseline by drift monitoring: %s", task, reason)
        monitor = self._monitors.get(task)
        if self.shared is not None and monitor is not None:
            rollback = {"task": task, "reason": reason, "evidence": evidence,
                        "certificate": _certificate_id(monitor.policy)}
            threading.Thread(target=self._publish, args=(task, rollback), daemon=True).start()

    # ---- shared drift state (replicas on one database) ---------------------------------------------------------

    def _publish(self, task: str, rollback: dict[str, Any]) -> None:
        for attempt in range(5):
            try:
                self.shared.publish(task, rollback)
                return
            except Exception:
                log.exception("could not share the rollback of task %s (attempt %d)", task, attempt + 1)
                self._stop.wait(1.0)

    def _adopt(self, monitor: DriftMonitor) -> None:
        """Obey a rollback another replica shared for this monitor's task, under the same certificate."""
        rollback = self._shared_rollbacks.get(monitor.task)
        if rollback is None or rollback.get("certificate") != _certificate_id(monitor.policy):
            return
        if monitor.adopt(rollback):
            self.metrics.rolled_back.labels(monitor.task).set(1)

    def poll(self) -> None:
        """Read the shared rollbacks once and obey them (the poller thread calls this every `poll_s`)."""
        if self.shared is None:
            return
        self._shared_rollbacks = self.shared.rolled_back()
        for monitor in list(self._monitors.values()):
            self._adopt(monitor)

    def start(self) -> None:
        """Start polling the shared drift state (no-op without one)."""
        if self.shared is None or self._poller is not None:
            return
        try:
            self.poll()
        except Exception:
            log.exception("reading the shared drift state failed; retrying in the background")

        def loop() -> None:
            while not self._stop.wait(self.poll_s):
                try:
                    self.poll()
                except Exception:
                    log.exception("reading the shared drift state failed")

        self._poller = threading.Thread(target=loop, name="parity-drift-poll", daemon=True)
        self._poller.start()

    def _record(self, policy: TaskPolicy, params: dict[str, Any], message: dict[str, Any], purpose: str,
                batch: bool) -> None:
        """A baseline or judge call made by drift monitoring: priced and recorded as route "shadow"."""
        self.recorder.record(Record(
            endpoint="messages", request=params, started_at=datetime.now(timezone.utc), duration_s=0.0,
            route="shadow", status=200, task=policy.task, task_label=policy.task, reason=f"drift_{purpose}",
            message=message, counted=False, batch=batch, tags={"drift": purpose},
        ))

    def routes(self, authenticate: Authenticate | None = None) -> list[BaseRoute]:
        """GET /v1/parity/drift: every watched task's `status()` (what the dashboard shows).

        `authenticate(request) -> (key id, error or None)`: the gateway's key check, when it has keys."""

        async def drift(request: Request) -> JSONResponse:
            if authenticate is not None:
                _, error = authenticate(request)
                if error is not None:
                    return error_response(error, new_request_id())
            return JSONResponse({"tasks": {task: m.status() for task, m in sorted(self.monitors.items())}})

        return [Route("/v1/parity/drift", drift, methods=["GET"])]

    async def aclose(self) -> None:
        """Stop every monitor's worker (and the shared-state poller)."""
        self._stop.set()
        for monitor in self._monitors.values():
            with contextlib.suppress(Exception):
                await monitor.aclose()


def _certificate_id(policy: TaskPolicy) -> Any:
    certificate = getattr(policy, "certificate", None)
    if isinstance(certificate, dict):
        return certificate.get("id")
    return getattr(certificate, "id", certificate)


def _safe_name(task: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task)[:100] or "task"


__all__ = ["DriftWatch"]
