"""The subject naming scheme. Every subject HieraMAS uses is built here.

``<prefix>`` defaults to ``hm`` and lets several deployments share one NATS.

==================================  =========================================
subject                             meaning
==================================  =========================================
``hm.gw.query``                     gateway: answer one query (queue ``gw``)
``hm.ctl.config.<op>``              controller: apply / get / history
``hm.node.<node>.activate``         arm a supernode for a query (queue ``nodes``)
``hm.node.<node>.propose.<slot>``   call proposer ``slot`` of ``node``
``hm.node.<node>.synthesize``       call the synthesizer of ``node``
``hm.decision.activate``            arm the decision node for a query
``hm.g.<group>.node.…``             the same, for nodes a config places in worker group ``<group>``
``hm.inst.<instance>``              one worker process's private inbox
``hm.gwi.<instance>``               one gateway's private inbox
``hm.gw.hello``                     gateway heartbeats (failover between controllers)
``hm.worker.hello``                 worker announcements
``hm.trace.<kind>``                 trace events (JetStream stream)
==================================  =========================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DECISION_NODE", "NODE_NAME", "Subjects"]

NODE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Node ids are subject tokens: no dots, spaces or wildcards."""

DECISION_NODE = "decision"


@dataclass(frozen=True, slots=True)
class Subjects:
    """Subject builder for one deployment prefix."""

    prefix: str = "hm"

    @property
    def query(self) -> str:
        return f"{self.prefix}.gw.query"

    def config(self, op: str) -> str:
        return f"{self.prefix}.ctl.config.{op}"

    def _base(self, group: str | None) -> str:
        return f"{self.prefix}.g.{group}" if group else self.prefix

    def activate(self, node: str, group: str | None = None) -> str:
        if node == DECISION_NODE:
            return f"{self._base(group)}.decision.activate"
        return f"{self._base(group)}.node.{node}.activate"

    def propose(self, node: str, slot: int | str, group: str | None = None) -> str:
        return f"{self._base(group)}.node.{node}.propose.{slot}"

    def synthesize(self, node: str, group: str | None = None) -> str:
        return f"{self._base(group)}.node.{node}.synthesize"

    def instance(self, instance_id: str) -> str:
        return f"{self.prefix}.inst.{instance_id}"

    def gateway_inbox(self, instance_id: str) -> str:
        return f"{self.prefix}.gwi.{instance_id}"

    def is_instance(self, subject: str) -> bool:
        """Is ``subject`` some worker's inbox (where routes may point)?"""
        return _one_token_after(subject, f"{self.prefix}.inst.")

    def is_gateway_inbox(self, subject: str) -> bool:
        """Is ``subject`` some gateway's inbox (where node outputs may go)?"""
        return _one_token_after(subject, f"{self.prefix}.gwi.")

    @property
    def worker_hello(self) -> str:
        return f"{self.prefix}.worker.hello"

    @property
    def gateway_hello(self) -> str:
        return f"{self.prefix}.gw.hello"

    def trace(self, kind: str) -> str:
        return f"{self.prefix}.trace.{kind}"

    @property
    def trace_wildcard(self) -> str:
        return f"{self.prefix}.trace.>"

    def all_activations(self, group: str | None = None) -> str:
        return f"{self._base(group)}.node.*.activate"

    def all_proposers(self, group: str | None = None) -> str:
        return f"{self._base(group)}.node.*.propose.*"

    def all_synthesizers(self, group: str | None = None) -> str:
        return f"{self._base(group)}.node.*.synthesize"

    @staticmethod
    def node_of(subject: str) -> str:
        """The node id inside a ``….node.<node>.…`` subject."""
        parts = subject.split(".")
        return parts[parts.index("node") + 1] if "node" in parts[:-1] else ""

    @staticmethod
    def slot_of(subject: str) -> int:
        """The slot index at the end of a ``….propose.<slot>`` subject."""
        return int(subject.rsplit(".", 1)[1])


def _one_token_after(subject: str, prefix: str) -> bool:
    rest = subject[len(prefix) :]
    return subject.startswith(prefix) and bool(NODE_NAME.match(rest))
