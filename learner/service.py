"""The learner service: traces in, graded episodes, REINFORCE updates, policy versions out.

One process (``hieramas learner``) runs one :class:`LearnerService` on its NATS
loop:

1. **Input.** A durable pull consumer on ``HIERAMAS_TRACES`` (:mod:`.consumer`),
   positioned at the stream sequence after the last one its saved state covers.
   Each message's events go to the :class:`~.assembly.Assembler`, which hands out
   one query when its ``query`` event and every active supernode's event have
   arrived, or after a grace period.
2. **Grading.** Deterministic graders only (:mod:`.grading`): queries that name a
   dataset item are graded per supernode and as a whole; others are kept without
   ground truth until a ``feedback`` event grades them.
3. **Training.** Only episodes *sampled* (``explore``) by a recent version of the
   lineage being trained are trained on: "recent" means at most ``max_lag`` newer
   heads (versions made current) since; the trainer corrects the remaining drift
   with the per-slot importance ratio of the log-probabilities the episode was
   sampled with (truncated).  Greedy episodes are graded and reported (``eval_*``
   metrics) but never trained on.  Every ``batch`` episodes: one REINFORCE update
   (in a thread), a durable save, then a new version published with its metrics.
4. **Durability.** The state (:mod:`.rundir`) is saved atomically at most
   ``save_every_s`` after a message is read, and after each update; only then is
   the stream acknowledged, up to the last message the save covers.  Restarted
   (even after SIGKILL), the learner reloads that state and reads on from the next
   sequence: nothing is lost, and a query already reflected is never counted
   again (its id is in the state).  A message the consumer skipped (a delivery
   lost in transit, which a later cumulative ack would acknowledge unread) is
   read from the stream by its sequence (:mod:`.consumer`).  An update saved but
   not yet published is published on restart, unless the store already has it
   (then it is adopted).
5. **Bad input** (a garbled message or event, an unknown config version or item,
   a config whose slots do not fit the policy, a grader failure) is rejected,
   logged and counted by code, and the learner carries on.  A failure of the bus
   itself (a config read timing out) rejects nothing: the learner reloads its
   saved state and reads those traces again.

The policy's slot layout comes from the current config in the config store; a
config with another layout starts a new lineage (:mod:`.lineage`).  A user's
rollback to an older version of the lineage is followed: training continues from
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg

from hieramas import metrics as prometheus
from hieramas.bus import Bus
from hieramas.controller.store import ConfigStore, CorruptConfigError, StoredConfig
from hieramas.learner.assembly import Assembled, Assembler
from hieramas.learner.consumer import TraceConsumer
from hieramas.learner.embedder_names import embedder_for
from hieramas.learner.embeddings import DEFAULT_MODEL, CachedEmbedder
from hieramas.learner.episode import Episode
from hieramas.learner.grading import ItemIndex, Rejected, grade_episode, with_feedback
from hieramas.learner.hyper import Hyper
from hieramas.learner.lineage import Lineage
from hieramas.learner.reinforce import TrainConfig
from hieramas.learner.rewards import RewardConfig, RewardMode, final_reward
from hieramas.learner.rundir import EPISODES_LOG, METRICS_LOG, RunDir
from hieramas.learner.store import PolicyRecord, PolicyStore, PolicyStoreError
from hieramas.tasks.sandbox import Sandbox
from hieramas.traces import ReadStats, ensure_trace_stream, read_events, wait_for_jetstream
from hieramas.wire import Subjects
from hieramas.wire.events import Feedback

__all__ = ["LearnerOptions", "LearnerService"]

log = structlog.get_logger(__name__)

IDLE_CHECK_S = 2.0
"""How often a learner with nothing to read checks that the stream ends where it read to."""


@dataclass(frozen=True)
class LearnerOptions:
    """How a learner runs (the ``hieramas learner`` options)."""

    run_dir: Path
    data_dir: Path | None = None
    reward: RewardMode = "multi"
    batch: int = 16
    alpha: float = 0.5
    lam: float = 300.0
    """λ of the cost shaping; it sets λ' (the unsolved side) too."""
    seed: int = 0
    embedder: str = DEFAULT_MODEL
    """The query/role/LLM embedder (``hash-32`` for tests and smoke runs)."""
    hidden: int = 64
    max_lag: int = 4
    """Sampled episodes planned by a version more than this many heads old are not trained on."""
    grace_s: float = 10.0
    orphan_s: float = 600.0
    max_pending: int = 20_000
    done_keep_s: float = 3600.0
    """How long a handed-out query id is remembered against duplicates of its events."""
    max_done: int = 100_000
    """... and how many at most (the oldest are forgotten first)."""
    max_ungraded: int = 2_000
    save_every_s: float = 1.0
    fetch_batch: int = 256
    hyper: Hyper = field(default_factory=Hyper)
    """Entropy coefficient, learning rate, temperature schedule (they replace ``train``'s)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Other hyper-parameters; its reward settings are replaced by reward/alpha/lam, and
    its user-set ones by ``hyper``."""

    def train_config(self) -> TrainConfig:
        """The trainer's configuration."""
        reward = RewardConfig(
            alpha=self.alpha, lam=self.lam, lam_unsolved=self.lam, mode=self.reward
        )
        return replace(self.train, reward=reward).with_hyper(self.hyper)


class LearnerService:
    """See the module docstring.  Runs on the bus loop: ``bus.run(service.run())``."""

    def __init__(self, bus: Bus, options: LearnerOptions, *, subjects: Subjects | None = None):
        if options.batch < 1:
            raise ValueError("batch must be at least 1")
        self.bus = bus
        prometheus.track("learner", self)  # its counters and last update, read at scrape time
        self.options = options
        self.subjects = subjects or Subjects()
        self.run_dir = RunDir(options.run_dir)
        self.seconds: defaultdict[str, float] = defaultdict(float)
        """Wall seconds this process spent reading, grading, training, publishing, saving."""
        self.items = ItemIndex(options.data_dir)
        self.consumer = TraceConsumer(bus, self.subjects)
        self.phase = "starting"
        self.recoveries = 0
        """Times an unexpected error made this process reload its last saved state."""
        self._train = options.train_config()
        self._embedder: CachedEmbedder | None = None
        self._sandbox: Sandbox | None = None
        self._configs: ConfigStore | None = None
        self._policies: PolicyStore | None = None
        self._stop: asyncio.Event | None = None
        self._rollback_to: tuple[int, int] | None = None  # (version, KV revision) to judge
        self._config_moved = False
        self._started = time.monotonic()
        self._reset_memory()

    def _reset_memory(self) -> None:
        """The in-memory state of a process that has loaded nothing yet."""
        opts = self.options
        self.counters: Counter[str] = Counter()
        self.read_stats = ReadStats()
        self.assembler = Assembler(
            grace_s=opts.grace_s,
            orphan_s=opts.orphan_s,
            max_pending=opts.max_pending,
            done_keep_s=opts.done_keep_s,
            max_done=opts.max_done,
        )
        self.lineage: Lineage | None = None
        self.buffer: list[Episode] = []
        self.ungraded: OrderedDict[str, Episode] = OrderedDict()
        self._packed: dict[str, msgspec.Raw] = {}  # query id -> its buffered/ungraded episode,
        # msgpack-encoded once: a backlog leaves hundreds buffered (each with its carried query
        # embedding, 1 KB), every save writes them all, and encoding them again per save was
        # the largest CPU cost of a save
        self.history: list[dict[str, Any]] = []
        self._seq = 0  # the last stream sequence applied to the in-memory state
        self._saved_seq = 0  # ... and the last one the saved state covers
        self._ack_msg: Msg | None = None
        self._stream_created = ""
        self._dirty = False
        self._last_save = 0.0
        self._episode_rows: list[dict[str, Any]] = []
        self._metric_rows: list[dict[str, Any]] = []
        self._pending_row: dict[str, Any] | None = None  # an update's metrics, until published
        self._window: Counter[str] = Counter()  # greedy (eval) episodes since the last version
        self._fits: dict[int, bool] = {}  # config version -> fits the lineage's layout
        self._read_at_start = 0
        self._idle_checked = time.monotonic()  # when an idle loop last looked at the stream's end
        self._idle_last = 0  # ... and the last sequence it saw there

    # -- lifecycle ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask :meth:`run` to save, acknowledge and return (from any thread)."""
        self.bus.loop.call_soon_threadsafe(self._set_stop)

    def _set_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Start, consume until :meth:`request_stop`, save and stop.

        An unexpected error (a NATS request timing out under load, a bug) does not end
        the learner: it drops its in-memory state, reloads the last saved one as a
        restarted process would, and reads on from there (with a growing pause).
        """
        self._stop = asyncio.Event()
        try:
            await self._setup()
            while not self._stop.is_set():
                try:
                    if await self._resume():
                        await self._loop()
                    return
                except Exception as exc:
                    self.recoveries += 1
                    self._set_phase("recovering")
                    log.exception("learner.recovering", error=repr(exc), recoveries=self.recoveries)
                    await self.consumer.close()
                    pause = min(0.5 * 2 ** min(self.recoveries, 6), 30.0)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), pause)
        finally:
            await self._shutdown()

    async def _setup(self) -> None:
        """What a process does once: connect the stores, watch them, load the embedder."""
        self._set_phase("connecting")
        await wait_for_jetstream(self.bus)
        await ensure_trace_stream(self.bus, self.subjects)
        self._configs = await ConfigStore(self.bus).open()
        await self._configs.watch()
        self._configs.on_change(self._on_config)
        self._policies = await PolicyStore(self.bus).open()
        await self._policies.watch(self._on_current)
        self._embedder = await asyncio.to_thread(embedder_for, self.options.embedder)

    async def _resume(self) -> bool:
        """Load the saved state (if any), fit the lineage to the config, and open the
        consumer after the last sequence the state covers; False if stopped first."""
        self._reset_memory()
        state = self.run_dir.load_state()
        self.run_dir.restore_logs(state)
        if state is not None:
            await asyncio.to_thread(self._restore, state)
        position = await self.consumer.position()
        if state is not None and (
            position.created != self._stream_created or position.last_seq < self._seq
        ):
            # a new stream (e.g. a fresh embedded NATS): its sequence numbers start over;
            # query ids still guard against counting anything twice
            log.warning("learner.stream_reset", saved_seq=self._seq, stream_last=position.last_seq)
            self.counters["stream_resets"] += 1
            self._seq = self._saved_seq = 0
        self._stream_created = position.created
        self._read_at_start = self.read_stats.events
        self._set_phase("waiting_config")
        stored = await self._wait_config()
        if stored is None:
            return False
        await self._align_lineage(stored, restart=state is not None)
        await self._save()
        await self.consumer.open(self._seq + 1)
        self._set_phase("running")
        assert self.lineage is not None
        log.info(
            "learner.started",
            run_dir=str(self.run_dir.path),
            from_seq=self._seq + 1,
            lineage=self.lineage.id,
            head=self.lineage.head,
            step=self.lineage.step,
        )
        return True

    async def _wait_config(self) -> StoredConfig | None:
        assert self._configs is not None and self._stop is not None
        while not self._stop.is_set():
            try:
                return await self._configs.get()
            except KeyError:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.5)
        return None

    async def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            if self.phase == "running":
                await self._save()
        await self.consumer.close()
        for store in (self._policies, self._configs):
            if store is not None:
                with contextlib.suppress(Exception):
                    await store.close()
        self._set_phase("stopped")

    # -- the loop ----------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._stop is not None
        opts = self.options
        while not self._stop.is_set():
            msgs = await self.consumer.fetch(opts.fetch_batch, timeout=0.25)
            started = time.perf_counter()
            now = time.time()
            ready: list[Assembled] = []
            late: list[Feedback] = []
            for msg in msgs:
                seq = self.consumer.seq(msg)
                if seq <= self._seq:  # delivered again (ack_wait passed): already applied
                    self.counters["redelivered"] += 1
                    continue
                if seq > self._seq + 1:  # the consumer skipped some: apply them first
                    await self._read_skipped(seq, now, ready, late)
                self._apply(seq, msg.data, now, ready, late)
                self._ack_msg = msg
            if not msgs and time.monotonic() - self._idle_checked >= IDLE_CHECK_S:
                # A lost delivery of the stream's last message has no later one to reveal it.
                # Only what was in the stream one check ago counts: a message published since
                # may simply not have been delivered yet.
                self._idle_checked = time.monotonic()
                overdue, self._idle_last = (
                    self._idle_last,
                    (await self.consumer.position()).last_seq,
                )
                await self._read_skipped(overdue + 1, now, ready, late)
            expired = self.assembler.expire(now)
            if expired:
                ready.extend(expired)
                self._dirty = True
            self.seconds["read"] += time.perf_counter() - started
            if ready or late:
                started = time.perf_counter()
                await self._handle(ready, late)
                self.seconds["grade"] += time.perf_counter() - started
            if self._config_moved:
                self._config_moved = False
                assert self._configs is not None
                await self._align_lineage(await self._configs.get(), restart=False)
            if self._rollback_to is not None:
                await self._follow_rollback()
            while len(self.buffer) >= opts.batch:
                await self._update()
            due = time.monotonic() - self._last_save >= opts.save_every_s
            if due and (self._seq > self._saved_seq or self._dirty):
                await self._save()

    def _apply(
        self, seq: int, data: bytes, now: float, ready: list[Assembled], late: list[Feedback]
    ) -> None:
        """Stream message ``seq`` into the assembler: what it completes goes to ready/late."""
        self._seq = seq
        for event in read_events(data, self.read_stats, seq=seq):
            for out in self.assembler.add(event, now, seq):
                (late if isinstance(out, Feedback) else ready).append(out)  # type: ignore[arg-type]

    async def _read_skipped(
        self, end: int, now: float, ready: list[Assembled], late: list[Feedback]
    ) -> None:
        """Apply messages ``self._seq + 1`` … ``end - 1``, which the consumer skipped, read
        from the stream by sequence.

        Sequences below the stream's first (aged out while the learner was away) are not
        asked for one by one; any the stream no longer has are counted as lost."""
        first = self._seq + 1
        if end <= first:
            return
        start = first
        if end - first > 64 or first == 1:
            start = max(first, (await self.consumer.position()).first_seq)
            if first > 1:  # (a new learner on an old stream: nothing of its own aged out)
                self.counters["stream_gap_expired"] += start - first
        read = 0
        for seq in range(start, end):
            got = await self.consumer.get(seq)
            if got is None:
                self.counters["stream_gap_lost"] += 1
            elif got[0].startswith(self.subjects.trace("")):  # the stream holds only traces
                self._apply(seq, got[1], now, ready, late)
                read += 1
        if end > start:
            self.counters["stream_gap_read"] += read
            log.warning("learner.stream_gap", first=first, end=end, read=read)

    # -- episodes ----------------------------------------------------------------------

    async def _handle(self, ready: Sequence[Assembled], late: Sequence[Feedback]) -> None:
        results = await asyncio.gather(
            *(self._episode_of(a) for a in ready), return_exceptions=True
        )
        for result in results:  # raised once all are done, so none outlives the recovery
            if isinstance(result, BaseException):
                raise result
        episodes = [r for r in results if not isinstance(r, BaseException)]
        for assembled, episode in zip(ready, episodes, strict=True):
            if episode is not None:
                self._route(episode, assembled.feedback, seq=assembled.seq)
        for fb in late:
            self._late_feedback(fb)

    async def _episode_of(self, assembled: Assembled) -> Episode | None:
        query = assembled.query
        try:
            if query.assignment is None:
                raise Rejected("no_plan", f"it failed before planning ({query.status})")
            # Any other failure to read the config store (a NATS timeout, a JetStream leader
            # moving) is not the episode's fault: it propagates, run() reloads the saved
            # state, and the episode is read again from the stream instead of being lost.
            stored = await self._config(query.config_version)
        except Rejected as exc:
            self._reject(exc.code, str(exc), query.query_id)
            return None
        try:
            assert self.lineage is not None and self._sandbox is not None
            episode, item_error = await grade_episode(
                assembled, stored.config, self.lineage.layout, self.items, self._sandbox
            )
        except Rejected as exc:
            self._reject(exc.code, str(exc), query.query_id)
            return None
        except Exception as exc:  # a grader bug must not stop the learner
            log.exception("learner.grading_failed", query_id=query.query_id)
            self._reject("grading_failed", f"{type(exc).__name__}: {exc}", query.query_id)
            return None
        if item_error is not None:  # kept, without ground truth
            self._reject(item_error.code, str(item_error), query.query_id)
        if assembled.missing:
            self.counters["nodes_missing"] += len(assembled.missing)
        return episode

    async def _config(self, version: int) -> StoredConfig:
        """The config an episode ran with, checked against the lineage's layout."""
        assert self._configs is not None and self.lineage is not None
        if version < 1:
            raise Rejected("unknown_config", "it names no config version")
        try:
            stored = await self._configs.get(version)
        except KeyError:
            raise Rejected(
                "unknown_config", f"config version {version} was never applied"
            ) from None
        except CorruptConfigError as exc:
            raise Rejected("unknown_config", str(exc)) from None
        fits = self._fits.get(version)
        if fits is None:
            fits = self._fits[version] = self.lineage.fits(stored.config)
        if not fits:
            raise Rejected(
                "layout_mismatch",
                f"config version {version} ({stored.config.name}) has other slots than the "
                f"policy's (lineage {self.lineage.id})",
            )
        return stored

    def _route(
        self,
        episode: Episode,
        feedback: Sequence[Feedback] = (),
        *,
        fed: bool = False,
        seq: int = 0,
    ) -> None:
        """Send a new episode where it belongs (``fed``: graded by a late feedback event)."""
        if feedback and not episode.graded:
            episode = with_feedback(episode, feedback[-1].score)
            self.counters["feedback_applied"] += 1
            fed = True
        elif feedback:
            self.counters["feedback_ignored_graded"] += 1  # the dataset's gold outranks it
        disposition = self._disposition(episode)
        self.counters["episodes"] += 1
        self.counters[f"episodes_{disposition}"] += 1
        data = episode.to_json()
        if disposition == "train":
            self.buffer.append(episode)
            self._packed[episode.query_id] = _pack(data)
        elif disposition == "awaiting_feedback":
            self.ungraded[episode.query_id] = episode
            self._packed[episode.query_id] = _pack(data)
            while len(self.ungraded) > self.options.max_ungraded:
                evicted, _ = self.ungraded.popitem(last=False)
                self._packed.pop(evicted, None)
                self.counters["ungraded_evicted"] += 1
        elif disposition == "eval":
            self._window["eval_n"] += 1
            self._window["eval_correct"] += int(bool(episode.final_correct))
            self._window["eval_cost_usd_x1e9"] += round(episode.total_cost_usd * 1e9)
        row = data  # packed above already: the log row can reuse (and trim) the map
        row.pop("query_text")
        row.pop("query_embedding")  # the log says what happened; the state keeps the inputs
        row["disposition"] = disposition
        row["feedback"] = fed
        row["seq"] = seq  # the stream message of its query event (0: graded by late feedback)
        if episode.graded:
            row["final_reward"] = final_reward(episode, self._train.reward)
        self._episode_rows.append(row)

    def _disposition(self, episode: Episode) -> str:
        if not episode.graded:
            sampled = episode.explore and episode.query_text
            return "awaiting_feedback" if sampled else "ungraded"
        if not episode.explore:
            return "eval" if episode.policy_version is not None else "static"
        if not episode.query_text or episode.temperature is None:
            return "not_trainable"
        assert self.lineage is not None
        lag = self.lineage.lag(episode.policy_version)
        if lag is None:
            return "foreign_policy"
        return "train" if lag <= self.options.max_lag else "stale"

    def _late_feedback(self, fb: Feedback) -> None:
        episode = self.ungraded.pop(fb.query_id, None)
        self._packed.pop(fb.query_id, None)
        if episode is None:
            self.counters["feedback_unmatched"] += 1
            log.warning(
                "learner.feedback_unmatched",
                query_id=fb.query_id,
                reason="no sampled episode without ground truth is stored for this query",
            )
            return
        self.counters["feedback_applied"] += 1
        self._route(with_feedback(episode, fb.score), fed=True)

    def _reject(self, code: str, reason: str, query_id: str) -> None:
        self.counters[f"rejected_{code}"] += 1
        n = self.counters[f"rejected_{code}"]
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning("learner.rejected", code=code, query_id=query_id, reason=reason, total=n)

    # -- training and versions --------------------------------------------------------------

    async def _update(self) -> None:
        lineage = self.lineage
        assert lineage is not None
        batch, self.buffer = self.buffer[: self.options.batch], self.buffer[self.options.batch :]
        for episode in batch:
            self._packed.pop(episode.query_id, None)
        started = time.perf_counter()
        trainer = lineage.trainer
        carried, embedded = trainer.carried, trainer.embedded
        stats = await asyncio.to_thread(trainer.update, batch)
        self.seconds["train"] += time.perf_counter() - started
        self.counters["embeddings_carried"] += trainer.carried - carried
        self.counters["embeddings_computed"] += trainer.embedded - embedded
        lineage.changed()
        row: dict[str, Any] = {"ts": time.time(), "lineage": lineage.id, **asdict(stats)}
        n = self._window["eval_n"]
        row["eval_n"] = n
        row["eval_accuracy"] = self._window["eval_correct"] / n if n else None
        row["eval_cost_usd"] = self._window["eval_cost_usd_x1e9"] / 1e9 / n if n else None
        row["episodes_total"] = self.counters["episodes"]
        self._window.clear()
        self._pending_row = row
        await self._save()  # durable (and its traces acknowledged) before it goes out
        await self._publish()

    async def _publish(self, *, adopt: bool = False) -> PolicyRecord:
        """Publish the lineage's policy as a new version (or, after a restart, adopt the one
        a killed run published from the same state)."""
        lineage, store = self.lineage, self._policies
        assert lineage is not None and store is not None
        row = self._pending_row or {}
        metrics = {
            k: float(v) for k, v in row.items() if isinstance(v, int | float) and k not in ("ts",)
        }
        record = await self._published_before() if adopt else None
        if record is None:
            started = time.perf_counter()
            record = await store.publish(lambda version: lineage.encode_version(version, metrics))
            self.seconds["publish"] += time.perf_counter() - started
        else:
            # A run killed between storing the version and moving 'current' left 'current' on
            # the parent: move it now, as our own write, so that the watch's replay of the old
            # value is an echo and not taken for a rollback to the parent.
            await store.make_current(record.version)
            log.info("learner.adopted_version", version=record.version, step=lineage.step)
        lineage.published(record.version)
        if self._pending_row is not None:
            row = {**self._pending_row, "version": record.version, "parent": record.parent}
            self.history.append(row)
            self._metric_rows.append(row)
            self._pending_row = None
        self._dirty = True
        log.info(
            "learner.version",
            version=record.version,
            parent=record.parent,
            step=lineage.step,
            lineage=lineage.id,
        )
        return record

    async def _published_before(self) -> PolicyRecord | None:
        """A version of this lineage at this step that the store has but the state does not."""
        lineage, store = self.lineage, self._policies
        assert lineage is not None and store is not None
        for record in reversed(await store.records()):
            if (
                isinstance(record, PolicyRecord)
                and record.lineage == lineage.id
                and record.meta.get("step") == lineage.step
                and record.version not in lineage.heads
            ):
                return record
        return None

    async def _align_lineage(self, stored: StoredConfig, *, restart: bool) -> None:
        """Make the lineage fit the current config: keep it, or start a new one."""
        lineage = self.lineage
        if lineage is not None and lineage.fits(stored.config):
            lineage.config_version = max(lineage.config_version, stored.version)
            if lineage.pending_publish:
                await self._publish(adopt=restart)
            elif restart:
                await self._check_current()
            return
        if lineage is not None:
            dropped = len(self.buffer) + len(self.ungraded)
            log.warning(
                "learner.new_lineage",
                reason="the config's slot layout changed",
                old=lineage.id,
                config=stored.config.name,
                config_version=stored.version,
                dropped_episodes=dropped,
            )
            self.counters["dropped_lineage_change"] += dropped
            self.buffer.clear()
            self.ungraded.clear()
            self._packed.clear()
        assert self._embedder is not None
        self.lineage = await asyncio.to_thread(
            Lineage.create,
            stored.config,
            stored.version,
            self._embedder,
            self._train,
            seed=self.options.seed,
            hidden=self.options.hidden,
            slot_actions=self.options.hyper.slot_actions,
            options=self.options.hyper.slot_options(),
            kind_columns=self.options.hyper.kind_columns,
        )
        self._fits.clear()
        self.counters["lineages"] += 1
        log.info(
            "learner.lineage_started",
            lineage=self.lineage.id,
            config=stored.config.name,
            config_version=stored.version,
            slots=len(self.lineage.layout.slots),
            actions=len(self.lineage.layout.actions),
        )
        await self._save()  # the lineage exists durably before its root version is published
        await self._publish()

    async def _check_current(self) -> None:
        """After a restart: follow a rollback made meanwhile, or make our head current again."""
        lineage, store = self.lineage, self._policies
        assert lineage is not None and store is not None
        current = await store.current_version()
        if current == lineage.head:
            return
        with contextlib.suppress(PolicyStoreError):
            if current and (await store.record(current)).lineage == lineage.id:
                return  # a rollback made while we were down: the watch hands it to the loop
        log.warning("learner.republish", head=lineage.head, store_current=current)
        lineage.changed()
        await self._publish()

    async def _on_current(self, version: int, revision: int) -> None:
        """The policy store's ``current`` moved (on the loop): judged between two steps of
        the main loop, when no publish of ours is half done (:meth:`_follow_rollback`)."""
        if self._rollback_to is None or revision > self._rollback_to[1]:
            self._rollback_to = (version, revision)

    async def _follow_rollback(self) -> None:
        """Follow a move of ``current`` that is not ours: our own publishes come back
        through the watch too (anything up to the revision we last wrote is an echo)."""
        assert self._rollback_to is not None
        (version, revision), self._rollback_to = self._rollback_to, None
        lineage, store = self.lineage, self._policies
        assert lineage is not None and store is not None
        if revision <= store.last_revision or version == lineage.head:
            return
        try:
            record = await store.record(version)
            if record.lineage != lineage.id:
                self.counters["foreign_current"] += 1
                log.warning(
                    "learner.foreign_current",
                    version=version,
                    lineage=record.lineage,
                    mine=lineage.id,
                    action="not followed: it is not of the lineage being trained",
                )
                return
            blob = await store.blob(version)
            await asyncio.to_thread(lineage.adopt, version, blob)
        except (PolicyStoreError, ValueError) as exc:
            self.counters["rollback_failed"] += 1
            log.error("learner.rollback_failed", version=version, error=str(exc))
            return
        self.counters["rollbacks_followed"] += 1
        self._dirty = True
        log.info("learner.follows_rollback", version=version, step=lineage.step)

    def _on_config(self, stored: StoredConfig) -> None:
        self._config_moved = True

    # -- durability --------------------------------------------------------------------

    async def _save(self) -> None:
        """Save the state (and the log lines it covers), then acknowledge what it covers."""
        episode_rows, self._episode_rows = self._episode_rows, []
        metric_rows, self._metric_rows = self._metric_rows, []
        seq, ack = self._seq, self._ack_msg
        started = time.perf_counter()
        await asyncio.to_thread(self._write, episode_rows, metric_rows)
        self.seconds["save"] += time.perf_counter() - started
        self._saved_seq = seq
        self._dirty = False
        self._last_save = time.monotonic()
        self.counters["saves"] += 1
        if ack is not None:
            try:
                await self.consumer.ack_through(ack)
                self._ack_msg = None if ack is self._ack_msg else self._ack_msg
            except Exception as exc:  # the next save acknowledges again, cumulatively
                self.counters["ack_failed"] += 1
                log.warning("learner.ack_failed", seq=seq, error=str(exc))

    def _write(self, episode_rows: list[dict[str, Any]], metric_rows: list[dict[str, Any]]) -> None:
        self.run_dir.append(EPISODES_LOG, episode_rows)
        self.run_dir.append(METRICS_LOG, metric_rows)
        self.run_dir.save_state(self._state(), self.status())

    def _state(self) -> dict[str, Any]:
        stats = self.read_stats
        return {
            "stream": {"created": self._stream_created, "seq": self._seq},
            "assembler": self.assembler.to_json(),
            "buffer": [self._packed[e.query_id] for e in self.buffer],
            "ungraded": [self._packed[q] for q in self.ungraded],
            "lineage": self.lineage.to_state() if self.lineage is not None else None,
            "history": self.history,
            "pending_row": self._pending_row,
            "window": dict(self._window),
            "counters": dict(self.counters),
            "read_stats": {
                "messages": stats.messages,
                "events": stats.events,
                "bad_messages": stats.bad_messages,
                "bad_events": stats.bad_events,
                "codes": dict(stats.codes),
            },
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        assert self._embedder is not None
        stream = state.get("stream") or {}
        self._stream_created = str(stream.get("created", ""))
        self._seq = self._saved_seq = int(stream.get("seq", 0))
        self.assembler.load_json(state.get("assembler") or {}, time.time())
        self.buffer = [Episode.from_json(e) for e in state.get("buffer") or ()]
        self.ungraded = OrderedDict(
            (e.query_id, e) for e in (Episode.from_json(x) for x in state.get("ungraded") or ())
        )
        self._packed = {
            e.query_id: _pack(e.to_json()) for e in (*self.buffer, *self.ungraded.values())
        }
        if state.get("lineage") is not None:
            self.lineage = Lineage.from_state(state["lineage"], self._embedder, self._train)
        self.history = list(state.get("history") or ())
        self._pending_row = state.get("pending_row")
        self._window = Counter(state.get("window") or {})
        self.counters = Counter(state.get("counters") or {})
        rs = state.get("read_stats") or {}
        self.read_stats = ReadStats(
            messages=int(rs.get("messages", 0)),
            events=int(rs.get("events", 0)),
            bad_messages=int(rs.get("bad_messages", 0)),
            bad_events=int(rs.get("bad_events", 0)),
            codes=Counter(rs.get("codes") or {}),
        )
        self.counters["restarts"] += 1
        log.info(
            "learner.restored",
            seq=self._seq,
            pending=len(self.assembler),
            buffered=len(self.buffer),
            done=len(self.assembler.done),
        )

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary (also written to ``status.json``)."""
        lineage = self.lineage
        elapsed = max(time.monotonic() - self._started, 1e-9)
        stats = self.read_stats
        return {
            "pid": os.getpid(),
            "phase": self.phase,
            "run_dir": str(self.run_dir.path),
            "stream_seq": self._seq,
            "lineage": lineage.id if lineage is not None else None,
            "version": lineage.head if lineage is not None else None,
            "step": lineage.step if lineage is not None else 0,
            "pending": len(self.assembler),
            "buffered": len(self.buffer),
            "awaiting_feedback": len(self.ungraded),
            "queries_done": self.assembler.counters["assembled"],
            "queries_remembered": len(self.assembler.done),
            "events_read": stats.events,
            "events_per_s": (stats.events - self._read_at_start) / elapsed,
            "bad_messages": stats.bad_messages,
            "bad_events": stats.bad_events,
            "bad_codes": dict(stats.codes),
            "counters": {**self.assembler.counters, **self.counters},
            "recoveries": self.recoveries,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "updated_unix": time.time(),
        }

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        if phase == "connecting" and self._sandbox is None:
            self._sandbox = Sandbox()
        with contextlib.suppress(OSError):
            self.run_dir.write_status(self.status())


def _pack(data: Mapping[str, Any]) -> msgspec.Raw:
    """``data`` as msgpack, embedded as is in the state (it decodes to the same map)."""
    return msgspec.Raw(msgspec.msgpack.encode(data))
