"""Just enough PromQL lexing to find the metrics and label matchers an expression uses.

promtool tells whether an expression parses; these tests also need to know *which*
metrics it reads (to compare them with what the services export) and *how* it filters
them (to check the dashboards' template variables). A tokenizer is enough for that:
strings, ranges and label lists are skipped as whole tokens, so label names, durations
and regexes are never mistaken for metric names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![\w.]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=,(){}@])
    """,
    re.VERBOSE,
)

AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
# Followed by a parenthesised list of label names, not of expressions.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = LABEL_LIST_KEYWORDS | {"bool", "offset", "and", "or", "unless", "atan2"}
NUMBER_WORDS = {"inf", "nan"}


@dataclass
class Selector:
    """One vector selector: its metric name (None for `{__name__=...}` forms) and matchers."""

    metric: str | None
    matchers: list[tuple[str, str, str]] = field(default_factory=list)  # (label, op, value)

    def matcher(self, label: str) -> tuple[str, str] | None:
        for name, op, value in self.matchers:
            if name == label:
                return op, value
        return None


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot tokenize PromQL at {position}: {expr[position:position + 30]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("ws", "comment"):
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    body = token[1:-1]
    return body if token[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in the expression, in order."""
    tokens = tokenize(expr)
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident":
            word = text.lower()
            if word in LABEL_LIST_KEYWORDS and following[1] == "(":
                i = _skip_group(tokens, i + 1)
                continue
            if word in KEYWORDS or word in NUMBER_WORDS:
                i += 1
                continue
            if following[1] == "(" or (word in AGGREGATORS and following[1].lower() in ("by", "without")):
                i += 1  # a function or an aggregation, not a metric
                continue
            selector = Selector(text)
            found.append(selector)
            i += 1
            if following[1] == "{":
                i = _read_matchers(tokens, i, selector)
            continue
        if text == "{":  # a selector without a metric name before the braces
            selector = Selector(None)
            i = _read_matchers(tokens, i, selector)
            name = selector.matcher("__name__")
            if name and name[0] == "=":
                selector.metric = name[1]
            found.append(selector)
            continue
        i += 1
    return found


def _skip_group(tokens: list[tuple[str, str]], start: int) -> int:
    """Index after the parenthesis that closes the one at `start`."""
    depth = 0
    for j in range(start, len(tokens)):
        if tokens[j][1] == "(":
            depth += 1
        elif tokens[j][1] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError("unbalanced parentheses")


def _read_matchers(tokens: list[tuple[str, str]], start: int, selector: Selector) -> int:
    """Reads `{label op "value", ...}` starting at the `{`; returns the index after `}`."""
    j = start + 1
    while tokens[j][1] != "}":
        if tokens[j][1] == ",":
            j += 1
            continue
        (label_kind, label), (_, op), (value_kind, value) = tokens[j], tokens[j + 1], tokens[j + 2]
        if label_kind not in ("ident", "string") or op not in ("=", "!=", "=~", "!~") or value_kind != "string":
            raise ValueError(f"bad label matcher near {label!r} {op!r} {value!r}")
        selector.matchers.append((_unquote(label) if label_kind == "string" else label, op, _unquote(value)))
        j += 3
    return j + 1


def metric_names(expr: str) -> set[str]:
    return {s.metric for s in selectors(expr) if s.metric}
