"""Promotion policies: rules a version must pass to become PRODUCTION. Pure; the service
gathers what they look at (the candidate, the production version, approvals, the schema
change) and records the rules themselves as events.

Rules, as JSON objects:
- ``{"type": "metadata", "expr": "metrics.rmse <= production.metrics.rmse"}``: a comparison
  (< <= > >= == !=) of two operands, each a path into the candidate's metadata, a path into
  the production version's (``production.…``), or a JSON literal. With no production version,
  comparisons against it pass (there is nothing to be worse than).
- ``{"type": "approval"}``: a second actor holding the promote scope approves that exact
  version (requestPromotion, then approvePromotion by someone else).
- ``{"type": "schema_compatible"}``: the candidate's records schema does not break readers of
  the production version's (no column removed or retyped).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.artifact import VersionState
from core.errors import ValidationError

RULE_TYPES = ("metadata", "approval", "schema_compatible")
COMPARISON = re.compile(r"^\s*(.+?)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne}
MISSING = object()


@dataclass(frozen=True)
class PolicyCheck:
    rule: str
    passed: bool
    reason: str


def validate_rules(rules: Any) -> list[dict[str, Any]]:
    """The rules as stored, or ValidationError naming the first bad one."""
    if not isinstance(rules, list):
        raise ValidationError("policy rules must be a JSON array of rule objects")
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or rule.get("type") not in RULE_TYPES:
            raise ValidationError(f"rule {index}: needs a type, one of {', '.join(RULE_TYPES)}")
        if rule["type"] == "metadata":
            _parse(rule.get("expr"), index)
    return [dict(rule) for rule in rules]


def evaluate(rules: Sequence[Mapping[str, Any]], candidate: VersionState,
             production: VersionState | None, *, approved_by: str | None,
             schema_breaks: bool) -> list[PolicyCheck]:
    """Every rule's verdict for promoting ``candidate`` (the policy, passed or not, why)."""
    checks = []
    for rule in rules:
        if rule["type"] == "metadata":
            checks.append(_metadata(rule["expr"], candidate, production))
        elif rule["type"] == "approval":
            checks.append(PolicyCheck(
                "approval", approved_by is not None,
                f"approved by {approved_by}" if approved_by else
                "needs approval by a second actor: requestPromotion, then approvePromotion"))
        else:
            checks.append(PolicyCheck(
                "schema_compatible", not schema_breaks,
                "breaks readers of the production version's schema (a column removed or "
                "retyped)" if schema_breaks else "compatible with the production version"))
    return checks


def _metadata(expr: str, candidate: VersionState, production: VersionState | None
              ) -> PolicyCheck:
    left, op, right = _parse(expr, 0)
    if production is None and "production." in expr:
        return PolicyCheck(f"metadata: {expr}", True, "no production version to compare with")
    a, b = _value(left, candidate, production), _value(right, candidate, production)
    if a is MISSING or b is MISSING:
        missing = left if a is MISSING else right
        return PolicyCheck(f"metadata: {expr}", False, f"{missing} is not set")
    try:
        passed = OPERATORS[op](a, b)
    except TypeError:
        return PolicyCheck(f"metadata: {expr}", False,
                           f"cannot compare {json.dumps(a)} with {json.dumps(b)}")
    verdict = "holds" if passed else "does not hold"
    return PolicyCheck(f"metadata: {expr}", passed,
                       f"{json.dumps(a)} {op} {json.dumps(b)} {verdict}")


def _parse(expr: Any, index: int) -> tuple[str, str, str]:
    match = COMPARISON.match(expr) if isinstance(expr, str) else None
    if match is None:
        raise ValidationError(f"rule {index}: expr must compare two operands, e.g. "
                              "'metrics.rmse <= production.metrics.rmse'")
    left, op, right = match.groups()
    return left, op, right


def _value(operand: str, candidate: VersionState, production: VersionState | None) -> Any:
    try:
        return json.loads(operand)  # a literal: 0.9, "gold", true, null
    except ValueError:
        pass
    source, path = (production, operand.removeprefix("production.")) if operand.startswith(
        "production.") else (candidate, operand)
    value: Any = dict(source.metadata) if source is not None else {}
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value
