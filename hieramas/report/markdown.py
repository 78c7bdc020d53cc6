"""The report document: Markdown (and optionally a self-contained HTML rendering of it)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Section", "label_of", "methods_table", "render", "to_html"]


@dataclass
class Section:
    """One part of the report: a heading, a caption, figures (relative paths), a table."""

    heading: str
    caption: str = ""
    figures: list[str] = field(default_factory=list)
    table: str = ""


def label_of(emulated: bool | None) -> str:
    """The report's data label, said once at the top and in every figure title."""
    if emulated is True:
        return "EMULATED"
    if emulated is False:
        return "REAL MODELS"
    return "UNLABELLED (the source does not record whether its models were emulated)"


def _cell(value: Any, digits: str = ".3f") -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, digits)
    return str(value)


def methods_table(methods: Sequence[Mapping[str, Any]], front: Sequence[str] = ()) -> str:
    """A Markdown table of method summaries (accuracy ± CI, cost, latency), Pareto marked."""
    head = (
        "| method | n | accuracy | 95% CI | cost $/query | latency p50 s | latency p95 s | Pareto |"
    )
    lines = [head, "|---|---:|---:|---|---:|---:|---:|:---:|"]
    for m in methods:
        ci = m.get("ci95")
        cells = [
            str(m.get("method", "")),
            _cell(m.get("n")),
            _cell(m.get("accuracy")),
            f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "",
            _cell(m.get("cost_per_query_usd"), ".4g"),
            _cell(m.get("latency_p50_s"), ".2f"),
            _cell(m.get("latency_p95_s"), ".2f"),
            "*" if m.get("method") in front else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(
    title: str,
    label: str,
    facts: Sequence[tuple[str, str]],
    sections: Sequence[Section],
    notes: Sequence[str],
) -> str:
    """The Markdown text of the report."""
    out = [f"# {title}", "", f"**Data: {label}.**", ""]
    if label == "EMULATED":
        out += [
            "Every figure below describes the emulated LLM pool (its profiles), not real models.",
            "",
        ]
    if facts:
        out += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts), ""]
    for section in sections:
        out += [f"## {section.heading}", ""]
        if section.caption:
            out += [section.caption, ""]
        out += [f"![{section.heading}]({fig})" for fig in section.figures]
        if section.figures:
            out.append("")
        if section.table:
            out += [section.table, ""]
    if notes:
        out += ["## Not shown", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(out)


def to_html(markdown_text: str, title: str) -> str:
    """A self-contained HTML page of the report (figures referenced by relative path)."""
    import markdown as md  # python-markdown

    body = md.markdown(markdown_text, extensions=["tables"])
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;}"
        "img{max-width:100%;}table{border-collapse:collapse;}"
        "td,th{border:1px solid #ccc;padding:2px 6px;}</style></head><body>\n"
        f"{body}\n</body></html>\n"
    )
