"""The supernode: N proposers in parallel, then one synthesizer, then the successors.

A slot this worker serves itself (locality-aware delivery) is called from here, in process;
any other slot gets a NATS request, which a worker of the slot's queue group takes.

Proposer failures do not fail the supernode: it synthesizes what it has and
its output lists what failed.  With every proposer skipped, the synthesizer
answers the task itself (the role stays in the graph).
"""

from __future__ import annotations

import time
from typing import Any

import pykka
import structlog

from hieramas.actors import prompting, voting
from hieramas.actors.join import JoinActor, NodeRun
from hieramas.actors.messages import LocalCallsDone, Redo, RequestDone, SlotDone, VoteDone
from hieramas.actors.slot import LocalCall, call_slots_here
from hieramas.controller.config import PASS, VOTE
from hieramas.controller.plan import Plan
from hieramas.wire import Envelope, Kind, WireError, new_id
from hieramas.wire.events import NodeModels, SupernodeRun
from hieramas.wire.messages import (
    NodeOutputRecord,
    SlotCall,
    SlotCallSpec,
    SlotResult,
    payload,
    read,
)
from hieramas.wire.subjects import DECISION_NODE

__all__ = ["SupernodeActor"]

log = structlog.get_logger(__name__)

SYNTH = "synth"


class SupernodeActor(JoinActor):
    """One supernode (role) of the DAG, for every query that arms it on this worker."""

    def predecessors(self, plan: Plan) -> tuple[str, ...]:
        return plan.nodes[self.node].preds

    def successors(self, plan: Plan) -> list[str]:
        return [*plan.nodes[self.node].succs, DECISION_NODE]

    def role(self, plan: Plan) -> str:
        return plan.nodes[self.node].role

    def run_node(self, run: NodeRun) -> None:
        node = run.plan.nodes[self.node]
        slots = node.active_slots
        if not slots:
            self._synthesize(run)
            return
        here: list[LocalCall | None] = []
        for slot in slots:
            llm = node.proposers[slot]
            assert llm is not None
            tag = f"p{slot}"
            run.waiting.add(tag)
            subject = self.ctx.subjects.propose(self.node, slot, node.group)
            here.append(self._request(run, tag, subject, "propose", llm, []))
        self._call_here(run, here)

    def on_other(self, message: Any) -> None:
        if isinstance(message, LocalCallsDone):
            for tag, result in message.results:
                self._on_slot_done(message.query_id, tag, result)
        elif isinstance(message, RequestDone):
            self._on_slot_done(message.query_id, message.tag, message.result)
        elif isinstance(message, VoteDone):
            self._on_vote_done(message)
        elif isinstance(message, Redo):
            run = self.runs.get(message.query_id)
            if (
                run is not None
                and message.tag in run.waiting
                and run.attempts.get(message.tag) == message.attempt
            ):
                log.warning("slot.redo", node=self.node, slot=message.tag, reason=message.reason)
                self._call_here(run, [self._request(run, message.tag, *run.requests[message.tag])])
        else:
            super().on_other(message)

    def _on_slot_done(
        self, query_id: str, tag_attempt: str, result: Envelope | SlotDone | BaseException
    ) -> None:
        run = self.runs.get(query_id)
        tag, _, attempt_text = tag_attempt.partition("@")  # our own tag: no checks needed
        attempt = int(attempt_text)
        if run is None or tag not in run.waiting or run.attempts.get(tag) != attempt:
            return  # finished already, or superseded by a retry elsewhere
        run.waiting.discard(tag)
        run.calls[tag], run.texts[tag] = _slot_record(result, tag)
        if tag == SYNTH:
            self._finish(run)
        elif not run.waiting:
            self._synthesize(run)

    def _synthesize(self, run: NodeRun) -> None:
        node = run.plan.nodes[self.node]
        proposals = _proposals(run)
        domain = run.plan.domain
        if node.synthesizer == VOTE and len(proposals) > 1 and voting.needs_execution(domain):
            run.waiting.add(SYNTH)
            query_id = run.activation.query_id
            self.ctx.bus.submit(
                voting.by_behaviour(run.plan.task_text, proposals),
                lambda result: self.actor_ref.tell(VoteDone(query_id, SYNTH, result)),
            )
            return
        if node.synthesizer in (VOTE, PASS):
            run.calls[SYNTH], run.texts[SYNTH] = _pseudo_synthesis(
                domain, node.synthesizer, proposals
            )
            self._finish(run)
            return
        run.waiting.add(SYNTH)
        subject = self.ctx.subjects.synthesize(self.node, node.group)
        self._call_here(
            run, [self._request(run, SYNTH, subject, "synthesize", node.synthesizer, proposals)]
        )

    def _on_vote_done(self, message: VoteDone) -> None:
        run = self.runs.get(message.query_id)
        if run is None or message.tag not in run.waiting:
            return  # expired meanwhile
        run.waiting.discard(message.tag)
        proposals = _proposals(run)
        if isinstance(message.result, BaseException):  # the sandbox failed: say so, keep going
            log.warning("vote.failed", node=self.node, error=repr(message.result))
            record, text = _pseudo_synthesis(run.plan.domain, VOTE, proposals)
            record["vote"] = {"method": "plurality:sandbox_failed", "error": str(message.result)}
        else:
            record, text = _pseudo_record(VOTE, proposals, message.result.index)
            record["vote"] = message.result.summary()
        run.calls[SYNTH], run.texts[SYNTH] = record, text
        self._finish(run)

    def _request(
        self, run: NodeRun, tag: str, subject: str, kind: str, llm: str, proposals: list[str]
    ) -> LocalCall | None:
        """Send slot call ``tag`` over NATS; or, for a slot this worker serves, return it to
        be made in process (:meth:`_call_here`)."""
        plan = run.plan
        attempt = run.attempts.get(tag, 0) + 1
        run.attempts[tag] = attempt
        run.requests[tag] = (subject, kind, llm, proposals)
        deadline = min(plan.deadline_unix, time.time() + plan.node_timeout_s)
        call = SlotCallSpec(
            kind="propose" if kind == "propose" else "synthesize",
            node=self.node,
            role=plan.nodes[self.node].role,
            domain=plan.domain,
            task=plan.task_text,
            predecessors=_predecessor_pairs(run),
            proposals=proposals,
            llm=llm,  # by name: the slot's worker looks it up in the config version
            max_tokens=plan.max_tokens,
            temperature=plan.temperature,
            deadline_unix=deadline,
            notify=self.ctx.inbox,
            # distinct samples per slot when sampling (self-consistency), reproducible per slot
            seed=(int(tag[1:]) + 1 if tag[1:].isdigit() else 0) if plan.temperature > 0 else None,
        )
        if self.ctx.bus.serves_locally(subject):  # this worker's own slot: call it from here
            return call, (tag, attempt, subject)
        timeout = max(deadline - time.time(), 0.05) + 0.5
        envelope = Envelope(
            kind=Kind.SLOT_CALL,
            payload=payload(SlotCall(slot=f"{tag}@{attempt}", call=call)),
            query_id=run.activation.query_id,
            trace_id=run.activation.trace_id,
            span_id=new_id(),
            config_version=run.activation.config_version,
            sender=self.ctx.worker_id,
        )
        node, tracker = self.node, self.ctx.tracker
        ref, qid = self.actor_ref, run.activation.query_id

        def done(result: Any) -> None:  # on the loop
            tracker.finished(qid, node, tag, attempt)
            ref.tell(RequestDone(query_id=qid, tag=f"{tag}@{attempt}", result=result))

        tracker.sent(qid, node, tag, attempt, ref)
        # resent after a reconnect: its reply may have been lost (a second reply is ignored)
        self.ctx.bus.request(subject, envelope, timeout, done, resend=True)
        return None

    def _call_here(self, run: NodeRun, calls: list[LocalCall | None]) -> None:
        """Make the slot calls this worker serves in process (``None``: one sent over NATS);
        their outcomes come back as one :class:`LocalCallsDone`."""
        batch = [call for call in calls if call is not None]
        if not batch:
            return
        ref, qid, counters = self.actor_ref, run.activation.query_id, self.ctx.bus.counters
        # the calls of one batch share their deadline (made in the same handler)
        timeout = max(batch[0][0].deadline_unix - time.time(), 0.05) + 0.5

        def here(results: list[tuple[str, SlotDone | BaseException]]) -> None:
            try:
                ref.tell(LocalCallsDone(query_id=qid, results=results))
            except pykka.ActorDeadError:  # the node stopped meanwhile (its worker did)
                counters["late_result"] += len(results)

        call_slots_here(self.ctx, run.config, batch, run.activation, timeout, here)

    def _finish(self, run: NodeRun) -> None:
        plan = run.plan
        node = plan.nodes[self.node]
        synth = run.calls.get(SYNTH, {})
        ok = synth.get("outcome") == "ok"
        text = run.texts.get(SYNTH, "") if ok else ""
        failures = [
            f"{tag}: {rec.get('error')}" for tag, rec in sorted(run.calls.items())
            if rec.get("outcome") != "ok"
        ]  # fmt: skip
        answerless = node.role in plan.answerless_roles
        finished = time.time()
        records = run.calls.values()
        event = SupernodeRun(
            query_id=run.activation.query_id,
            trace_id=run.activation.trace_id,
            span_id=new_id(),
            config_version=run.activation.config_version,
            node=self.node,
            role=node.role,
            status="ok" if ok else "error",
            # parsed once, here: node-level rewards read it from the trace, not the text
            answer=None if (answerless or not ok) else prompting.extract_answer(plan.domain, text),
            answerless=answerless,
            error=None if ok else f"synthesizer failed: {synth.get('error')}",
            failures=failures,
            models=NodeModels(proposers=list(node.proposers), synthesizer=node.synthesizer),
            vote=synth.get("vote"),
            proposals_used=sum(
                1 for t, r in run.calls.items() if t != SYNTH and r.get("outcome") == "ok"
            ),
            started=run.started,
            finished=finished,
            latency_s=finished - (run.started or finished),
            cost_usd=sum(float(r.get("cost_usd") or 0.0) for r in records),
            prompt_tokens=sum(int(r.get("prompt_tokens") or 0) for r in records),
            completion_tokens=sum(int(r.get("completion_tokens") or 0) for r in records),
            worker=self.ctx.worker_id,
        )
        self.ctx.traces.emit(event)
        output = NodeOutputRecord(
            node=self.node,
            role=node.role,
            status=event.status,
            text=text,
            answer=event.answer,
            answerless=answerless,
            error=event.error,
            failures=failures,
            models=event.models,
            calls=run.calls,  # the run is forgotten now: its records go out as they are
            vote=event.vote,
            proposals_used=event.proposals_used,
            started=run.started,
            finished=finished,
            latency_s=event.latency_s,
            cost_usd=event.cost_usd,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            worker=self.ctx.worker_id,
        )
        self.finish(run, output, [*node.succs, DECISION_NODE])


def _predecessor_pairs(run: NodeRun) -> list[tuple[str, str]]:
    pairs = []
    for pred in run.preds:
        out = run.inputs.get(pred)
        if out is not None and out.status == "ok" and out.text:
            pairs.append((out.role or pred, out.text))
    return pairs


def _proposals(run: NodeRun) -> list[str]:
    """The texts of the successful proposals, in slot order."""
    return [
        run.texts.get(tag, "")
        for tag, rec in sorted(run.calls.items())
        if tag.startswith("p") and rec.get("outcome") == "ok"
    ]


def _pseudo_synthesis(domain: str, how: str, proposals: list[str]) -> tuple[dict[str, Any], str]:
    """The synthesizer record (and text) of ``vote`` / ``pass``: a choice among proposals,
    no LLM call."""
    index = voting.plurality(domain, proposals)[0] if how == VOTE and proposals else 0
    return _pseudo_record(how, proposals, index)


def _pseudo_record(how: str, proposals: list[str], index: int) -> tuple[dict[str, Any], str]:
    record: dict[str, Any] = {
        "model": how, "slot": SYNTH, "latency_s": 0.0, "cost_usd": 0.0,
        "prompt_tokens": 0, "completion_tokens": 0, "pseudo": True,
    }  # fmt: skip
    if not proposals:
        return {**record, "outcome": "error", "error": f"{how}: no successful proposal"}, ""
    return {**record, "outcome": "ok", "error": None}, proposals[index]


def _slot_record(
    result: Envelope | SlotDone | BaseException, tag: str
) -> tuple[dict[str, Any], str]:
    """A finished slot call's record (its ``llm_call`` event as a map) and its text."""
    if isinstance(result, SlotDone):  # made in process: its record is this worker's own
        return result.record, result.text
    if not isinstance(result, BaseException):
        try:
            read(result, SlotResult)  # every field checked; the record is kept as its map
        except WireError as exc:
            result = exc
    if isinstance(result, BaseException):
        return {"outcome": "error", "error": f"{type(result).__name__}: {result}", "slot": tag}, ""
    record = dict(result.payload["call"])  # the call's llm_call event, as a map
    record.setdefault("outcome", str(result.payload["status"]))
    return record, str(result.payload.get("text") or "")
