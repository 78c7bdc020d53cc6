"""The decision node: reads every active supernode's output and writes the final answer.

If every answer-producing supernode gives the same (parsed) answer, that
answer wins without a call.  With no supernode active (all skipped) or none
that succeeded, the decision LLM answers the task alone, and says so.  A failed
decision call (an HTTP error, a timeout) fails the query explicitly: status
``error``, no answer, the call's error in ``error`` and ``failures``.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from hieramas.actors import prompting, voting
from hieramas.actors.calls import start_llm_call, traced_call
from hieramas.actors.context import WorkerContext
from hieramas.actors.join import JoinActor, NodeRun
from hieramas.actors.messages import CallDone, VoteDone
from hieramas.actors.trusted import Refused
from hieramas.controller.config import VOTE
from hieramas.controller.plan import Plan
from hieramas.wire import new_id
from hieramas.wire.events import DecisionRun, LlmCall
from hieramas.wire.messages import NodeOutputRecord
from hieramas.wire.subjects import DECISION_NODE

__all__ = ["DecisionActor"]

log = structlog.get_logger(__name__)


def _good(run: NodeRun) -> list[NodeOutputRecord]:
    """The supernode outputs that succeeded with some text."""
    outputs = (run.inputs[n] for n in run.preds)
    return [o for o in outputs if o.status == "ok" and o.text]


def _voters(good: list[NodeOutputRecord]) -> list[NodeOutputRecord]:
    """Who votes: the answer-giving outputs, else every good one."""
    return [o for o in good if not o.answerless] or good


class DecisionActor(JoinActor):
    """The final node of every query routed to this worker."""

    def __init__(self, ctx: WorkerContext, node: str = DECISION_NODE) -> None:
        super().__init__(ctx, node)

    def predecessors(self, plan: Plan) -> tuple[str, ...]:
        return tuple(plan.nodes)

    def successors(self, plan: Plan) -> list[str]:
        return []

    def role(self, plan: Plan) -> str:
        return "decision"

    def run_node(self, run: NodeRun) -> None:
        plan = run.plan
        good = _good(run)
        answers = [o.answer for o in good if not o.answerless]
        if answers and None not in answers and len(set(answers)) == 1:
            winner = next(o for o in good if not o.answerless)
            self._finish(run, text=winner.text, answer=answers[0], decided_by="agreement")
            return
        if plan.decision == VOTE:
            voters = _voters(good)
            if not voters:
                self._finish(
                    run, text="", answer=None, decided_by="vote",
                    failed="no supernode output to vote on",
                )  # fmt: skip
                return
            texts = [o.text for o in voters]
            if len(texts) > 1 and voting.needs_execution(plan.domain):
                run.waiting.add("vote")
                query_id = run.activation.query_id
                self.ctx.bus.submit(
                    voting.by_behaviour(plan.task_text, texts),
                    lambda result: self.actor_ref.tell(VoteDone(query_id, "vote", result)),
                )
                return
            index, answer = voting.plurality(plan.domain, texts)
            self._finish(run, text=texts[index], answer=answer, decided_by="vote")
            return
        if good:
            messages = prompting.decision_messages(
                plan.domain, plan.task_text, [(o.role, o.text) for o in good]
            )
            mode = "llm"
        else:
            messages = prompting.single_messages(
                plan.domain, plan.task_text, cot=plan.alone_prompt != "direct"
            )
            mode = "alone_all_skipped" if not plan.nodes else "alone_all_failed"
        try:  # from the trusted config version, never from the plan
            model, endpoint = run.config.call_specs(plan.decision)
        except Refused as exc:
            self.ctx.bus.counters[f"endpoint.refused.{exc.code}"] += 1
            self._finish(run, text="", answer=None, decided_by=mode, failed=f"{exc.code}: {exc}")
            return
        run.waiting.add(mode)
        start_llm_call(
            self.ctx,
            self.actor_ref.tell,
            query_id=run.activation.query_id,
            tag=mode,
            model=model,
            endpoint=endpoint,
            messages=messages,
            max_tokens=plan.max_tokens,
            temperature=plan.temperature,
            deadline_unix=plan.deadline_unix,
        )

    def on_other(self, message: Any) -> None:
        if isinstance(message, VoteDone):
            self._on_vote_done(message)
            return
        if not isinstance(message, CallDone):
            return
        run = self.runs.get(message.query_id)
        if run is None or message.tag not in run.waiting:
            return
        plan = run.plan
        model = run.config.call_specs(plan.decision)[0]
        # attempt 1: made by the decision actor itself, not sent to a slot
        site = (DECISION_NODE, "decision", "decision", 1)
        call, text = traced_call(self.ctx, message, model, run.activation, site)
        ok = call.outcome == "ok"
        self._finish(
            run,
            text=text,
            answer=prompting.extract_answer(plan.domain, text) if ok else None,
            decided_by=message.tag,
            call=call,
        )

    def _on_vote_done(self, message: VoteDone) -> None:
        run = self.runs.get(message.query_id)
        if run is None or message.tag not in run.waiting:
            return  # expired meanwhile
        run.waiting.discard(message.tag)
        texts = [o.text for o in _voters(_good(run))]
        if isinstance(message.result, BaseException):  # the sandbox failed: plurality instead
            log.warning("vote.failed", node=self.node, error=repr(message.result))
            index, vote = voting.plurality(run.plan.domain, texts)[0], None
        else:
            index, vote = message.result.index, message.result.summary()
        text = texts[index]
        answer = prompting.extract_answer(run.plan.domain, text)
        self._finish(run, text=text, answer=answer, decided_by="vote", vote=vote)

    def _finish(
        self,
        run: NodeRun,
        *,
        text: str,
        answer: str | None,
        decided_by: str,
        call: LlmCall | None = None,
        vote: dict[str, object] | None = None,
        failed: str | None = None,
    ) -> None:
        """Trace the decision and send it to the gateway; ``failed`` fails it without a call."""
        finished = time.time()
        if call is not None and call.outcome != "ok":
            failed = call.error
        ok = failed is None
        event = DecisionRun(
            query_id=run.activation.query_id,
            trace_id=run.activation.trace_id,
            span_id=new_id(),
            config_version=run.activation.config_version,
            status="ok" if ok else "error",
            answer=answer,
            decided_by=decided_by,
            vote=vote,
            error=None if ok else f"decision LLM failed: {failed}",
            failures=[] if ok else [f"{decided_by}: {failed}"],
            model=run.plan.decision if call is not None else None,
            started=run.started,
            finished=finished,
            latency_s=finished - (run.started or finished),
            cost_usd=call.cost_usd if call is not None else 0.0,
            prompt_tokens=call.prompt_tokens if call is not None else 0,
            completion_tokens=call.completion_tokens if call is not None else 0,
            worker=self.ctx.worker_id,
        )
        self.ctx.traces.emit(event)
        output = NodeOutputRecord(
            node=DECISION_NODE,
            role="decision",
            status=event.status,
            text=text,
            answer=answer,
            decided_by=decided_by,
            vote=vote,
            error=event.error,
            failures=event.failures,
            model=event.model,
            call=call,
            started=run.started,
            finished=finished,
            latency_s=event.latency_s,
            cost_usd=event.cost_usd,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            worker=self.ctx.worker_id,
        )
        self.finish(run, output, [])
