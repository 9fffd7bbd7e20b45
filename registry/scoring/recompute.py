"""The recompute: due agents' inputs in bulk -> ``trust`` -> changed results, batched.

One run:

1. take the recompute lock (one run at a time, one replica at a time);
2. read, in one snapshot, every due agent's inputs (never computed, new input,
   time-dependent factors due per ``trust.next_recompute_due``, a promotion
   being held, or the agent row changed since) and the recent violations;
3. compute each score, ring decision (hysteresis) and next due time, in one
   pass per agent (:class:`BatchScorer` over ``trust``'s scoring kernel);
4. per batch, in ONE transaction: the new trust states, a history point for
   every agent whose score, tier or ring changed, and the score/tier/ring
   events (each carrying the agent's state after the change).

Nothing is written as an event unless it changed; an agent whose score did
not move only gets its state row rewritten (``next_due_at``, ``dirty`` ...).

On PostgreSQL, whose server does the heavy part of a write in its own
process, the inputs stream in batches and two writer threads store batches
while the next ones are read and computed; on SQLite, whose work runs in this
process, a batch's statements run while the compute waits, and its commit
(and checkpoint) while the next batch is computed. The compute pauses briefly
every few milliseconds so the server's event loop (Watch streams, RPCs) keeps
getting the GIL during a large run.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii as _js
from types import TracebackType
from typing import Any

from registry.events import types as event_types
from registry.scoring.lock import RecomputeLock
from registry.store.repos.trust import ScoreRow, ScoringRow, ViolationRow
from trust import FACTOR_NAMES, Policy
from trust.kernel import RING_LABELS, Evaluation
from trust.rings import TERMINATED_RING_REASON, ring_step
from trust.tiers import TIERS

log = logging.getLogger(__name__)

SANDBOX = 3
#: Violations older than this many half-lives weigh nothing measurable (2**-30).
VIOLATION_HALF_LIVES = 30
#: The compute pauses for YIELD_SECONDS once it has run this long without a
#: pause, so the server's event loop (Watch streams, RPCs) gets the GIL while a
#: large run computes (PostgreSQL's writer threads get it then too).
YIELD_AFTER_SECONDS = 0.010
YIELD_SECONDS = 0.001
#: How often (in agents) the compute looks at the clock for a pause.
_YIELD_CHECK = 32
#: Writer threads (connections) of a multi-batch run on PostgreSQL.
PG_WRITERS = 2

_SCORE_CHANGED = event_types.SCORE_CHANGED
_TIER_CHANGED = event_types.TIER_CHANGED
_RING_CHANGED = event_types.RING_CHANGED
_TIER_RANK = {tier.value: rank for rank, tier in enumerate(TIERS)}


@dataclass(frozen=True, slots=True)
class RecomputeResult:
    examined: int = 0
    changed: int = 0
    events: int = 0
    last_sequence: int = 0
    #: Another run held the lock; nothing was done.
    skipped: bool = False


@dataclass(slots=True)
class ScoredBatch:
    """A batch's results, ready to store: one :data:`ScoreRow` per agent (fields
    named by ``ScoreResult``) and the events (type, agent, JSON payload) of those
    that changed, in agent order."""

    results: list[ScoreRow]
    events: list[tuple[str, str | None, str]]


class BatchScorer:
    """Scores stored inputs under one policy, many agents at a time (pure: no I/O).

    Per agent: one kernel evaluation (factors, score, tier, next due time), one
    ring step (hysteresis), the breakdown and the event payloads written straight
    as JSON text. The JSON is the same document ``json.dumps`` makes of
    ``Score.factors`` (see ``registry.scoring.inputs.json_inputs``) and of the
    events' payloads; a property test holds the two paths equal.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        k = policy.kernel
        self._kernel = k
        w = k.weights

        def head(i: int) -> str:
            return f'{{"name": "{FACTOR_NAMES[i]}", "value": %r, "weight": {w[i]!r}, "points": %r'

        def prior_only(i: int, prior: float) -> str:
            return (head(i) % (prior, 1000.0 * (w[i] * prior))) + (
                f', "inputs": {{"prior": {prior!r}}}}}'
            )

        fading = (
            (0, policy.success_rate),
            (1, policy.error_budget_remaining),
            (4, policy.audit_log_completeness),
        )
        #: Per fading factor: (template with a report, JSON without one).
        self._fading = tuple(
            (
                head(i)
                + ', "inputs": {"reported": %r, "source": %s, "age_s": %r, "ramp": ['
                + f"{fp.zero_at!r}, {fp.full_at!r}, %r], "
                + f'"faded": %r, "prior": {fp.prior!r}}}}}',
                prior_only(i, fp.prior),
            )
            for i, fp in fading
        )
        #: Per fading factor, its JSON without a report (the prior).
        self._no_report = tuple(without for _, without in self._fading)
        self._violation = (
            head(2)
            + ', "inputs": {"observed_s": %r, "clean": %r, '
            + f'"clean_prior": {policy.violation_recency.clean_record_prior!r}, '
            + '"violations": %d, "heaviest": %s}}'
        )
        c = policy.credential_age
        self._credential = (
            head(3)
            + ', "inputs": {"age_s": %r, "source": "registry", '
            + f'"limits_s": [{c.soft_limit_s!r}, {c.hard_limit_s!r}], "floor": {c.floor!r}}}}}'
        )
        self._credential_unknown = prior_only(3, c.prior)

    def score(
        self,
        rows: Sequence[ScoringRow],
        violations: Mapping[str, Sequence[ViolationRow]],
        now: datetime,
        *,
        pause: bool = False,
    ) -> ScoredBatch:
        """Score ``rows`` at ``now``. With ``pause``, sleep ``YIELD_SECONDS`` after
        every ``YIELD_AFTER_SECONDS`` of work (see the module docstring)."""
        results: list[ScoreRow] = []
        events: list[tuple[str, str | None, str]] = []
        one = self._one
        clock = time.perf_counter
        last = clock()
        for i, row in enumerate(rows):
            if pause and i % _YIELD_CHECK == 0 and clock() - last >= YIELD_AFTER_SECONDS:
                time.sleep(YIELD_SECONDS)
                last = clock()
            results.append(one(row, violations.get(row[0], ()), now, events))
        return ScoredBatch(results, events)

    def _one(
        self,
        row: ScoringRow,
        vios: Sequence[ViolationRow],
        now: datetime,
        events: list[tuple[str, str | None, str]],
    ) -> ScoreRow:
        (
            did, status, granted, created_at, current_kid, key_at, _, prev_score, prev_tier,
            stored_ring, held, held_since, sr, sr_at, sr_by, eb, eb_at, eb_by, au, au_at, au_by,
        ) = row
        k = self._kernel
        terminated = status != "active"
        sr_age = 0.0 if sr_at is None else (now - sr_at).total_seconds()
        eb_age = 0.0 if eb_at is None else (now - eb_at).total_seconds()
        au_age = 0.0 if au_at is None else (now - au_at).total_seconds()
        pairs: Sequence[tuple[float, float]] = ()
        if vios:
            severity = k.severity_weights
            pairs = [(severity[v.severity], (now - v.occurred_at).total_seconds()) for v in vios]
        observed = (now - created_at).total_seconds()
        key_age = None if key_at is None else (now - key_at).total_seconds()
        ev = k.evaluate(
            sr, sr_age, eb, eb_age, au, au_age, pairs, observed, key_age, terminated, True
        )
        score = ev.score
        tier = ev.tier.value
        labels = RING_LABELS

        # The ring: first placement follows the score; afterwards, the state machine.
        candidate: int | None = None
        since: datetime | None = None
        if prev_score is None:
            if terminated:
                ring, reason = SANDBOX, TERMINATED_RING_REASON
            else:
                allowed = k.tier_rings[_TIER_RANK[tier]]
                ring = granted if granted > allowed else allowed
                reason = (
                    f"first placement: score {score} ({tier}) allows {labels[allowed]}, "
                    f"operator granted {labels[granted]}"
                )
        else:
            stored = min(max(stored_ring, 0), SANDBOX)
            if held is None or held_since is None or held >= stored:
                held = held_since = None
            step = ring_step(
                stored, held, held_since, granted, score, now, self.policy, terminated
            )
            ring, candidate, since, reason = (
                step.effective,
                step.candidate,
                step.candidate_since,
                step.reason,
            )

        due = None if ev.due_us is None else now + timedelta(microseconds=ev.due_us)
        if since is not None:
            promotion = since + k.hold
            if due is None or promotion < due:
                due = promotion

        # The breakdown, as JSON text.
        values = ev.values
        weights = k.weights
        fading = self._fading_json
        f = values[2]
        heaviest = "null"
        if ev.heaviest >= 0:
            v = vios[ev.heaviest]
            age = pairs[ev.heaviest][1]
            heaviest = (
                f"[{_js(v.severity)}, {age if age > 0.0 else 0.0!r}, {_js(v.reason)}, "
                f"{ev.heaviest_penalty!r}]"
            )
        violation = self._violation % (
            f,
            1000.0 * (weights[2] * f),
            observed if observed > 0.0 else 0.0,
            ev.clean,
            len(vios),
            heaviest,
        )
        if key_age is None:
            credential = self._credential_unknown
        else:
            f = values[3]
            credential = self._credential % (
                f,
                1000.0 * (weights[3] * f),
                key_age if key_age > 0.0 else 0.0,
            )
        no_report = self._no_report
        breakdown = (
            f"[{no_report[0] if sr is None else fading(ev, 0, 0, sr, sr_by, sr_age)}, "
            f"{no_report[1] if eb is None else fading(ev, 1, 1, eb, eb_by, eb_age)}, "
            f"{violation}, {credential}, "
            f"{no_report[2] if au is None else fading(ev, 2, 4, au, au_by, au_age)}]"
        )

        # What subscribers were last told: a first score follows the grant alone, and
        # an inactive agent has been in the sandbox since the event that made it so.
        if terminated:
            prev_ring = SANDBOX
        elif prev_score is None:
            prev_ring = granted
        else:
            prev_ring = stored_ring
        changed = score != prev_score or tier != prev_tier or ring != prev_ring
        if changed:
            effective = SANDBOX if terminated else (granted if granted > ring else ring)
            state = (
                f'{{"status": {_js(status)}, "granted_ring": {granted}, '
                f'"effective_ring": {effective}, "score": {score}, "tier": "{tier}", '
                f'"current_kid": {_js(current_kid)}}}'
            )
            if score != prev_score:
                old = "null" if prev_score is None else str(prev_score)
                events.append(
                    (_SCORE_CHANGED, did, f'{{"old": {old}, "new": {score}, "state": {state}}}')
                )
            if tier != prev_tier:
                old = "null" if prev_tier is None else _js(prev_tier)
                events.append(
                    (_TIER_CHANGED, did, f'{{"old": {old}, "new": "{tier}", "state": {state}}}')
                )
            if ring != prev_ring:
                events.append(
                    (
                        _RING_CHANGED,
                        did,
                        f'{{"old": {prev_ring}, "new": {ring}, "reason": {_js(reason)}, '
                        f'"state": {state}}}',
                    )
                )
        return (did, score, tier, ring, candidate, since, reason, breakdown, due, changed)

    def _fading_json(
        self, ev: Evaluation, i: int, factor: int, raw: float | None, by: str, age: float
    ) -> str:
        """Fading factor ``factor`` (the ``i``-th fading one) of ``ev`` as JSON."""
        with_report, without = self._fading[i]
        ramped, decayed = ev.ramps[i], ev.decays[i]
        if raw is None or ramped is None or decayed is None:
            return without
        f = ev.values[factor]
        return with_report % (
            f,
            1000.0 * (self._kernel.weights[factor] * f),
            raw,
            _js(by or "unknown"),
            age if age > 0.0 else 0.0,
            ramped,
            1.0 - decayed,
        )


class Recomputer:
    """Recomputes trust for a store under one policy. Thread-safe; blocking."""

    def __init__(
        self,
        store: Any,
        policy: Policy | None = None,
        *,
        batch: int = 5000,
        on_commit: Callable[[RecomputeResult], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy or Policy.default()
        self.batch = batch
        self.lock = RecomputeLock(store)
        self.scorer = BatchScorer(self.policy)
        self._on_commit = on_commit

    def close(self) -> None:
        """Nothing to release today; the server calls it on shutdown."""

    def run(
        self,
        *,
        dids: Sequence[str] | None = None,
        everything: bool = False,
        wait: float = 0.0,
    ) -> RecomputeResult:
        """Recompute due agents (or ``dids``, or ``everything``).

        ``wait``: how long to wait for a run in progress (0: skip at once)."""
        with self.lock.hold(wait=wait) as held:
            if not held:
                return RecomputeResult(skipped=True)
            return self._run(dids, everything)

    def _run(self, dids: Sequence[str] | None, everything: bool) -> RecomputeResult:
        now = self.store.now()
        due_at = None if (everything or dids is not None) else now
        writer = _Writer(self.store, now)
        if self.store.dialect == "postgresql":
            self._run_streamed(writer, dids, due_at, now)
        else:
            self._run_in_turn(writer, dids, due_at, now)
        result = RecomputeResult(
            writer.examined, writer.changed, writer.events, writer.last_seq
        )
        if self._on_commit is not None:
            self._on_commit(result)
        return result

    def _violations_since(self, now: datetime) -> datetime:
        return now - self.policy.violation_recency.half_life * VIOLATION_HALF_LIVES

    def _run_in_turn(
        self, writer: _Writer, dids: Sequence[str] | None, due_at: datetime | None, now: datetime
    ) -> None:
        """SQLite: its work runs in this process, under the GIL between each row, so
        statements beside the compute would only trade the GIL back and forth. Read
        everything (and end the read before writing), then compute a batch, write
        its statements while this thread waits, and compute the next batch while
        that transaction commits (a commit and its checkpoint run without the GIL)."""
        with self.store.read() as view:
            rows = view.trust.scoring_inputs(dids=dids, due_at=due_at)
            if not rows:
                return
            # Few agents: fetch only theirs; many: one scan of the window is cheaper.
            wanted = [r[0] for r in rows] if len(rows) <= 500 else None
            violations = view.trust.violations(self._violations_since(now), dids=wanted)
        if len(rows) <= self.batch:
            writer.write(self.scorer.score(rows, violations, now))
            return
        with writer.running(1):
            for start in range(0, len(rows), self.batch):
                chunk = rows[start : start + self.batch]
                writer.put(self.scorer.score(chunk, violations, now, pause=True), wait=True)

    def _run_streamed(
        self, writer: _Writer, dids: Sequence[str] | None, due_at: datetime | None, now: datetime
    ) -> None:
        """PostgreSQL: its server does the heavy part of a write in its own process.
        The inputs stream in batches from one snapshot; the first batch is computed
        as soon as it arrives and writer threads store batches while the next ones
        are read and computed."""
        with (
            self.store.read() as view,
            closing(view.trust.scoring_input_batches(self.batch, dids=dids, due_at=due_at))
            as batches,
        ):
            first: list[ScoringRow] = next(batches, [])
            if not first:
                return
            only = len(first) < self.batch  # a short first batch is the only one
            # Few agents: fetch only theirs; many: one scan of the window is cheaper.
            wanted = [r[0] for r in first] if only and len(first) <= 500 else None
            violations = view.trust.violations(self._violations_since(now), dids=wanted)
            if only:
                writer.write(self.scorer.score(first, violations, now))
                return
            with writer.running(PG_WRITERS):
                for chunk in itertools.chain([first], batches):
                    writer.put(self.scorer.score(chunk, violations, now, pause=True))


class _Writer:
    """Stores scored batches, each in one transaction. With :meth:`running`, on
    writer threads of their own while the caller computes the next batches.

    Each batch's transaction writes its states and history, then appends its
    events last: concurrent batches serialise on the event counter there, so
    sequence numbers stay gap-free and in commit order (batches may commit in
    either order; each agent's events are within one batch, in order).
    """

    def __init__(self, store: Any, now: datetime) -> None:
        self._store = store
        self._now = now
        self.examined = self.changed = self.events = self.last_seq = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[ScoredBatch, threading.Event | None] | None] = (
            queue.Queue(maxsize=1)
        )
        self._error: BaseException | None = None

    def write(self, batch: ScoredBatch, written: threading.Event | None = None) -> None:
        """Store ``batch`` in one transaction; ``written`` is set once its statements
        have run (before the commit), or when they failed."""
        now = self._now
        try:
            with self._store.transaction() as tx:
                changed = tx.trust.write_scores(batch.results, computed_at=now, read_at=now)
                # Events last: the sequence counter stays locked until the commit.
                seq = tx.trust.append_event_rows(batch.events)
                if written is not None:
                    written.set()
        finally:
            if written is not None:
                written.set()
        with self._lock:
            self.examined += len(batch.results)
            self.changed += changed
            self.events += len(batch.events)
            self.last_seq = max(seq, self.last_seq)

    def put(self, batch: ScoredBatch, *, wait: bool = False) -> None:
        """Queue ``batch`` (waits while the writers are busy); with ``wait``, return
        only once its statements have run (its commit may still be going on).
        Raises a writer's error if a write failed."""
        if self._error is not None:
            raise self._error
        written = threading.Event() if wait else None
        self._queue.put((batch, written))
        if written is not None:
            written.wait()
            if self._error is not None:
                raise self._error

    def running(self, workers: int) -> _Running:
        return _Running(self, workers)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, written = item
            if self._error is not None:
                if written is not None:
                    written.set()
                continue  # a batch failed: drop the rest (the caller raises)
            try:
                self.write(batch, written)
            except BaseException as error:  # re-raised on the caller's thread
                with self._lock:
                    self._error = self._error or error


class _Running:
    def __init__(self, writer: _Writer, workers: int) -> None:
        self._writer = writer
        self._threads = [
            threading.Thread(target=writer._loop, name=f"trust-recompute-writer-{i}", daemon=True)
            for i in range(workers)
        ]

    def __enter__(self) -> _Writer:
        for thread in self._threads:
            thread.start()
        return self._writer

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for _ in self._threads:
            self._writer._queue.put(None)
        for thread in self._threads:
            thread.join()
        if kind is None and self._writer._error is not None:
            raise self._writer._error
