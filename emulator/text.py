"""Reply text: reasoning prose of a drawn length, then the answer in the requested format.

The prose is assembled from sentence banks by hashed choices; it never
contains anything an answer extractor could mistake for an answer (no option
letters after "answer"/"option", no digits in malformed replies).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

__all__ = ["answer_block", "generic_reply", "malformed_tail", "prose", "snippet"]

_OPENERS: dict[str, tuple[str, ...]] = {
    "mcq": (
        "Let me work through what the question is really asking.",
        "I will weigh each of the listed options against the key facts.",
        "First, I identify the concept the question is testing.",
    ),
    "math": (
        "Let me set up the problem carefully.",
        "We begin by translating the statement into equations.",
        "First, let us identify the quantities we need.",
    ),
    "number": (
        "Let me break the word problem into steps.",
        "We track each quantity mentioned in the problem.",
        "First, let us list what we know.",
    ),
    "code": (
        "Let me outline the approach before writing the function.",
        "The function needs to handle the general case and the edge cases.",
        "I will follow the docstring and its examples closely.",
    ),
    "generic": (
        "Here is a concise response.",
        "Let me address the request directly.",
        "Thanks for the question; here is my take.",
    ),
}

_BODY: dict[str, tuple[str, ...]] = {
    "mcq": (
        "Several of the options sound reasonable at first, so a closer look is needed.",
        "The wording of the question narrows things down considerably.",
        "One of the options contradicts a basic principle of the field.",
        "Another option is true in general but does not address the question asked.",
        "Recalling the standard definition helps to rule out the distractors.",
        "It is worth checking whether any option is only partially correct.",
        "Comparing the remaining candidates, one fits all the conditions given.",
        "The examples usually given in textbooks point in the same direction.",
        "A common misconception leads to one of the other options.",
        "Taking the context of the question into account settles the matter.",
    ),
    "math": (
        "Simplifying the expression, we collect like terms.",
        "Substituting the known values gives a simpler relation.",
        "We can factor the expression to expose its structure.",
        "Checking the boundary cases confirms the pattern.",
        "Applying the standard identity reduces the problem further.",
        "The constraint rules out the extraneous solution.",
        "Rewriting in terms of a single variable makes the equation tractable.",
        "A quick sanity check with a small case agrees with the general result.",
        "Combining the two relations eliminates the auxiliary variable.",
        "The result is consistent with the conditions of the problem.",
    ),
    "number": (
        "We add up the amounts from each part of the story.",
        "Next, we account for the change described in the second part.",
        "Multiplying by the rate gives the total for the period.",
        "We subtract what was used or given away.",
        "Converting units keeps the computation consistent.",
        "Each step follows directly from the information given.",
        "A quick check confirms that the intermediate values make sense.",
        "Putting the pieces together gives the final quantity.",
    ),
    "code": (
        "We iterate over the input once and keep track of the state we need.",
        "Edge cases such as an empty input are handled naturally by the loop.",
        "The examples in the docstring serve as a quick check of the logic.",
        "Using built-in functions keeps the implementation short and readable.",
        "The time complexity is linear or close to it for typical inputs.",
        "Intermediate results are accumulated in a local variable.",
        "The return value matches the type given in the signature.",
    ),
    "synth": (
        "I compared the proposed solutions and checked where they agree.",
        "The proposals differ in one key step, which I re-derived myself.",
        "Weighing the arguments given by the other agents, one line of reasoning is stronger.",
        "Where the proposals disagree, I followed the one whose reasoning holds up.",
        "Most of the proposals reach the same conclusion by similar routes.",
    ),
    "generic": (
        "The main point is to be clear about the goal and the constraints.",
        "A good first step is to gather the relevant information.",
        "It usually helps to break the task into smaller parts.",
        "Each part can then be handled on its own and combined at the end.",
        "Trade-offs should be made explicit so they can be revisited later.",
        "Keeping the solution simple makes it easier to check.",
    ),
}

_CLOSERS: dict[str, tuple[str, ...]] = {
    "mcq": ("Putting this together, I am fairly confident in my choice.",),
    "math": ("Therefore we have our result.",),
    "number": ("So we have the final amount.",),
    "code": ("Here is the implementation.",),
    "generic": ("I hope this helps.",),
}

_MALFORMED: dict[str, tuple[str, ...]] = {
    "mcq": (
        "I am torn between a couple of the options and cannot settle on one with confidence.",
        "Without more context it is hard to commit to a single option here.",
    ),
    "math": (
        "I was not able to finish the computation cleanly, so I will stop here.",
        "The algebra became messy and I could not simplify it to a final form.",
    ),
    "number": (
        "I lost track of one of the quantities, so I cannot give a reliable total.",
        "The problem is ambiguous about one step, so I will not commit to a total.",
    ),
    "code": (
        "The approach is to loop over the input and build the result step by step, "
        "handling the edge cases first.",
        "I would implement this with a simple loop and a few conditionals, "
        "but I will leave the exact code as an exercise.",
    ),
    "generic": ("I am not sure how to answer that.",),
}

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")


def snippet(question: str, max_words: int = 12) -> str:
    """The first words of a question (letters only), to quote in the prose."""
    return " ".join(_WORD.findall(question)[:max_words])


def _pick(bank: Sequence[str], rng: random.Random) -> str:
    return bank[int(rng.random() * len(bank))]


def prose(style: str, target_tokens: int, rng: random.Random, *, question: str = "") -> str:
    """Reasoning prose of roughly ``target_tokens`` tokens in ``style``.

    ``style``: ``mcq``, ``math``, ``number``, ``code``, ``generic``, or
    ``synth:<style>`` for a synthesizer (synthesis sentences mixed in).
    """
    synth = style.startswith("synth:")
    base = style.removeprefix("synth:")
    sentences = [_pick(_OPENERS[base], rng)]
    quote = snippet(question)
    if quote:
        sentences.append(f'The question begins: "{quote}..."')
    bodies = list(_BODY[base] + (_BODY["synth"] if synth else ()))
    if synth:
        sentences.append(_pick(_BODY["synth"], rng))
    rng.shuffle(bodies)
    # ~1 token per 4.5 characters in this prose
    budget = max(target_tokens, 8) * 4.5
    length = sum(len(s) for s in sentences)
    i = 0
    while length < budget and i < 400:
        s = bodies[i % len(bodies)]
        sentences.append(s)
        length += len(s) + 1
        i += 1
    sentences.append(_pick(_CLOSERS[base], rng))
    return _paragraphs(sentences, rng)


def _paragraphs(sentences: Sequence[str], rng: random.Random) -> str:
    out: list[str] = []
    line: list[str] = []
    for s in sentences:
        line.append(s)
        if len(line) >= 3 and rng.random() < 0.4:
            out.append(" ".join(line))
            line = []
    if line:
        out.append(" ".join(line))
    return "\n\n".join(out)


def malformed_tail(style: str, rng: random.Random) -> str:
    """A closing paragraph that gives no parseable answer."""
    return _pick(_MALFORMED[style.removeprefix("synth:")], rng)


def answer_block(kind: str, answer: str) -> str:
    """The final answer in the standard format of ``kind`` (the prompts ask for these)."""
    if kind == "mcq":
        return f"The answer is ({answer})."
    if kind == "math":
        return f"The final answer is $\\boxed{{{answer}}}$."
    if kind == "number":
        return f"The answer is {answer}"
    if kind == "code":
        return f"```python\n{answer.rstrip()}\n```"
    return answer


def generic_reply(target_tokens: int, rng: random.Random) -> str:
    """A well-formed reply to a prompt that matches no benchmark item."""
    return prose("generic", target_tokens, rng)
