"""Routing rules: which studies are analysed, which of their images, where results go.  Pure.

Rules are tried in order.  A rule *takes* an instance when any of its ``match`` alternatives
holds (every condition in it holds).  The first rule that takes any instance of a study
routes the study: of the instances it takes, those its ``analyze`` conditions select are
analysed and the others are kept as context.  A study no rule takes, or whose rule selects
nothing to analyse, is not routed, and the decision says why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config.pipeline import Condition, Match, RoutingRule

#: The instance fields a condition can test, in the order explanations list them.
FIELDS: tuple[str, ...] = (
    "modality",
    "sop_class",
    "body_part",
    "view_position",
    "laterality",
    "series_description",
    "calling_ae",
    "called_ae",
)


@dataclass(frozen=True)
class InstanceFacts:
    """What routing may look at, for one instance (from the index or a file's header)."""

    sop_instance_uid: str
    sop_class: str | None = None
    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    laterality: str | None = None
    series_description: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None

    def value(self, field: str) -> str | None:
        value: str | None = getattr(self, field)
        if value is None:
            return None
        text = value.strip()
        return text or None


def facts_from_header(header: Any, calling_ae: str | None, called_ae: str | None) -> InstanceFacts:
    """What routing sees of a DICOM header (a pydicom data set, or anything with ``get(keyword)``)."""

    def text(keyword: str) -> str | None:
        value = header.get(keyword)
        return str(value) if value is not None and str(value).strip() else None

    return InstanceFacts(
        sop_instance_uid=text("SOPInstanceUID") or "",
        sop_class=text("SOPClassUID"),
        modality=text("Modality"),
        body_part=text("BodyPartExamined"),
        view_position=text("ViewPosition"),
        laterality=text("ImageLaterality") or text("Laterality"),
        series_description=text("SeriesDescription"),
        calling_ae=calling_ae,
        called_ae=called_ae,
    )


def condition_holds(condition: Condition, value: str | None) -> bool:
    if condition.values is not None:
        wanted = {None if v is None or not v.strip() else v.strip().upper() for v in condition.values}
        hit = (value.upper() if value is not None else None) in wanted
    else:
        assert condition.regex is not None  # Condition's validator guarantees one of them
        hit = re.match(condition.regex, value or "") is not None
    return hit != condition.negate


def describe_condition(condition: Condition) -> str:
    if condition.values is not None:
        listed = ", ".join("(absent)" if v is None else v for v in condition.values)
        test = f"one of [{listed}]"
    else:
        test = f"matching /{condition.regex}/"
    return f"not {test}" if condition.negate else test


def explain_condition(field: str, condition: Condition, value: str | None) -> tuple[bool, str]:
    """Whether it holds, and a line saying why: ``modality 'CT' is not one of [CR, DX]``."""
    holds = condition_holds(condition, value)
    shown = "(absent)" if value is None else repr(value)
    verb = "is" if holds else "is not"
    if condition.negate:
        # "is not one of" reads better than "is not not one of"
        body = describe_condition(condition.model_copy(update={"negate": False}))
        verb = "is not" if holds else "is"
        return holds, f"{field} {shown} {verb} {body}"
    return holds, f"{field} {shown} {verb} {describe_condition(condition)}"


def conditions_of(match: Match) -> list[tuple[str, Condition]]:
    return [(field, condition) for field in FIELDS if (condition := getattr(match, field)) is not None]


def match_holds(match: Match, facts: InstanceFacts) -> bool:
    return all(condition_holds(condition, facts.value(field)) for field, condition in conditions_of(match))


def first_failure(match: Match, facts: InstanceFacts) -> str | None:
    """The first condition of ``match`` that fails for ``facts``, in words; None when all hold."""
    for field, condition in conditions_of(match):
        holds, line = explain_condition(field, condition, facts.value(field))
        if not holds:
            return line
    return None


def rule_takes(rule: RoutingRule, facts: InstanceFacts) -> bool:
    return any(match_holds(match, facts) for match in rule.match)


@dataclass(frozen=True)
class RoutingDecision:
    """What happens to a study: routed by ``rule`` (analyse + context), or not routed, and why."""

    rule: str | None
    analyze: tuple[InstanceFacts, ...]
    context: tuple[InstanceFacts, ...]
    destinations: tuple[str, ...]
    outputs: tuple[str, ...]
    reason: str

    @property
    def routed(self) -> bool:
        return self.rule is not None


def route_study(
    rules: Sequence[RoutingRule], instances: Sequence[InstanceFacts], destinations: Sequence[str]
) -> RoutingDecision:
    """Route a study's instances by the first rule that takes any of them."""
    if not instances:
        return RoutingDecision(None, (), (), (), (), "not routed: the study has no instances")
    for rule in rules:
        taken = [facts for facts in instances if rule_takes(rule, facts)]
        if not taken:
            continue
        analyze = tuple(facts for facts in taken if match_holds(rule.analyze, facts))
        context = tuple(facts for facts in taken if not match_holds(rule.analyze, facts))
        if not analyze:
            why = first_failure(rule.analyze, taken[0]) or "no instance selected"
            return RoutingDecision(
                None,
                (),
                context,
                (),
                (),
                f"not routed: rule {rule.name} takes {len(taken)} instance(s) but selects none to analyse ({why})",
            )
        chosen = tuple(rule.destinations) if rule.destinations is not None else tuple(sorted(destinations))
        where = ", ".join(chosen) if chosen else "no destination configured: results stay in the outbox"
        reason = (
            f"routed by rule {rule.name}: {len(analyze)} instance(s) analysed, {len(context)} kept as context; "
            f"outputs {', '.join(rule.outputs)} to {where}"
        )
        return RoutingDecision(rule.name, analyze, context, chosen, tuple(rule.outputs), reason)
    return RoutingDecision(None, (), (), (), (), "not routed: " + _why_no_rule(rules, instances))


def _why_no_rule(rules: Sequence[RoutingRule], instances: Sequence[InstanceFacts]) -> str:
    if not rules:
        return "no routing rules are configured"
    sample = instances[0]
    parts = []
    for rule in rules:
        failures = [first_failure(match, sample) or "" for match in rule.match]
        parts.append(f"{rule.name}: {' / '.join(failures)}")
    more = f" (first of {len(instances)} instances shown)" if len(instances) > 1 else ""
    return f"no rule takes any of its {len(instances)} instance(s){more}; " + "; ".join(parts)


def explain_rules(rules: Sequence[RoutingRule], facts: InstanceFacts) -> list[str]:
    """For ``gazex rules test``: every rule, every alternative and condition, and the verdict."""
    lines: list[str] = []
    verdict: str | None = None
    for index, rule in enumerate(rules, start=1):
        takes = rule_takes(rule, facts)
        lines.append(f"rule {index} {rule.name}: {'TAKES this instance' if takes else 'does not take it'}")
        for number, match in enumerate(rule.match, start=1):
            results = [explain_condition(field, cond, facts.value(field)) for field, cond in conditions_of(match)]
            holds = all(ok for ok, _ in results)
            label = f"  match {number}" if len(rule.match) > 1 else "  match"
            lines.append(f"{label}: {'holds' if holds else 'fails'}")
            lines += [f"    {'✓' if ok else '✗'} {line}" for ok, line in results] or [
                "    (no conditions: any instance)"
            ]
        if takes and verdict is None:
            results = [
                explain_condition(field, cond, facts.value(field)) for field, cond in conditions_of(rule.analyze)
            ]
            analysed = all(ok for ok, _ in results)
            lines.append(f"  analyze: {'yes' if analysed else 'no, kept as context'}")
            lines += [f"    {'✓' if ok else '✗'} {line}" for ok, line in results] or ["    (no conditions: analysed)"]
            where = ", ".join(rule.destinations) if rule.destinations is not None else "every configured destination"
            lines.append(f"  outputs: {', '.join(rule.outputs)}; destinations: {where}")
            role = "analysed" if analysed else "kept as context"
            verdict = f"result: rule {rule.name} routes this instance's study; this instance is {role}"
    lines.append(verdict or "result: no rule takes this instance; on its own its study would not be routed")
    return lines
