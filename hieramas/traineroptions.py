"""The Stage-1 trainer's options, defined once for ``hieramas learner`` and ``hieramas train``.

Both commands hand the same settings to the same trainer (``train`` passes them on to
the learner process it starts), so they share one definition of each option
(``Annotated`` aliases: type, bounds and help) and of the defaults (:data:`DEFAULT`,
the :class:`~hieramas.learner.hyper.Hyper` defaults; α and λ those of
:class:`~hieramas.learner.rewards.RewardConfig`, repeated here so that the CLI loads
without numpy).  torch-free.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from hieramas.learner.hyper import Hyper

__all__ = [
    "DEFAULT",
    "DEFAULT_ALPHA",
    "DEFAULT_LAM",
    "AdvantageScaleOpt",
    "AlphaOpt",
    "DroppedCreditOpt",
    "EntropyCoefOpt",
    "GroupOpt",
    "KindColumnsOpt",
    "LamOpt",
    "LrOpt",
    "ProposerSkipOpt",
    "SlotActionsOpt",
    "SynthesizerSkipOpt",
    "TempEndOpt",
    "TempStartOpt",
    "TempUpdatesOpt",
    "hyper_or_exit",
]

DEFAULT = Hyper()
DEFAULT_ALPHA = 0.5
DEFAULT_LAM = 300.0

AlphaOpt = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Weight α of a supernode's own reward.")
]
LamOpt = Annotated[float, typer.Option(min=0.0, help="Cost shaping λ (US$^-1).")]
EntropyCoefOpt = Annotated[
    float, typer.Option(min=0.0, help="The learner's entropy bonus weight (β).")
]
LrOpt = Annotated[float, typer.Option(min=0.0, help="The learner's learning rate (Adam).")]
TempStartOpt = Annotated[
    float, typer.Option(min=0.0, help="Sampling temperature at the first update.")
]
TempEndOpt = Annotated[
    float, typer.Option(min=0.0, help="Sampling temperature after --temp-updates updates.")
]
TempUpdatesOpt = Annotated[
    int, typer.Option(min=1, help="Updates of the temperature's cosine decay from start to end.")
]
SlotActionsOpt = Annotated[
    bool,
    typer.Option(help="Give each slot its own learned preference over the LLMs (a new policy)."),
]
SynthesizerSkipOpt = Annotated[
    bool,
    typer.Option(
        help="Let the policy skip synthesizer slots, dropping their supernodes (off: every "
        "supernode runs; a new policy)."
    ),
]
ProposerSkipOpt = Annotated[
    bool,
    typer.Option(
        help="Let the policy skip proposer slots (off: every slot of an active supernode "
        "answers; a new policy)."
    ),
]
DistinctProposersOpt = Annotated[
    bool,
    typer.Option(
        help="Make the proposers of one supernode call different LLMs, in sampling and "
        "decoding alike (a new policy)."
    ),
]
AdvantageScaleOpt = Annotated[
    str,
    typer.Option(
        help="How the learner scales advantages: batch (each batch's std) or running (a moving "
        "average of it, so cost differences in an all-correct batch stay small)."
    ),
]
DroppedCreditOpt = Annotated[
    str,
    typer.Option(
        help="Multi-level credit of a supernode the plan dropped: final (R alone) or peers "
        "(the running supernodes' mean own reward beside R, so dropping is neutral at the "
        "node level)."
    ),
]
KindColumnsOpt = Annotated[
    bool,
    typer.Option(
        help="Score synthesizer choices with their own LLM columns, apart from the proposers' "
        "(a new policy)."
    ),
]

GroupOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Training queries per train item, asked in a row; the baseline of an episode is "
        "then the mean reward of its item's other episodes in the batch (1: a moving average).",
    ),
]


def hyper_or_exit(
    err: Console,
    *,
    entropy_coef: float,
    lr: float,
    temp_start: float,
    temp_end: float,
    temp_updates: int,
    slot_actions: bool = DEFAULT.slot_actions,
    group: int = DEFAULT.group,
    synthesizer_skip: bool = DEFAULT.synthesizer_skip,
    proposer_skip: bool = DEFAULT.proposer_skip,
    advantage_scale: str = DEFAULT.advantage_scale,
    kind_columns: bool = DEFAULT.kind_columns,
    distinct_proposers: bool = DEFAULT.distinct_proposers,
    dropped_credit: str = DEFAULT.dropped_credit,
) -> Hyper:
    """The :class:`Hyper` of these option values; an invalid one is printed, exit code 2."""
    try:
        return Hyper(
            entropy_coef=entropy_coef,
            lr=lr,
            temp_start=temp_start,
            temp_end=temp_end,
            temp_updates=temp_updates,
            slot_actions=slot_actions,
            group=group,
            synthesizer_skip=synthesizer_skip,
            proposer_skip=proposer_skip,
            advantage_scale=advantage_scale,  # type: ignore[arg-type]  # Hyper checks it
            kind_columns=kind_columns,
            distinct_proposers=distinct_proposers,
            dropped_credit=dropped_credit,  # type: ignore[arg-type]  # Hyper checks it
        )
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
