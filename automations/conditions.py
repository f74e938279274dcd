"""
Conditions over an order, shared by automation rules and routing cards.

A condition is `{"field": "total", "operator": "gt", "value": "500"}`; a list of them matches with `all` or
`any`. Each field declares its kind, and the kind the operators it accepts, so a rule is checked when it is
saved (`validate`) and evaluated without surprises later (`evaluate`). Written here rather than taken from a
rules library: the ones on PyPI (business-rules, rule-engine) bring their own expression language or class
hierarchy, and what a seller needs is this small, explainable vocabulary whose every result is logged.
"""

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

NUMERIC_OPERATORS = {
    "eq": "is",
    "ne": "is not",
    "gt": "is more than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
}
TEXT_OPERATORS = {
    "eq": "is",
    "ne": "is not",
    "in": "is one of",
    "not_in": "is none of",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "is_empty": "is empty",
    "is_not_empty": "is not empty",
}
# For fields with several values per order (its SKUs, its tags): "is" means "one of them is".
LIST_OPERATORS = {
    "eq": "includes",
    "ne": "does not include",
    "in": "includes any of",
    "not_in": "includes none of",
    "contains": "has one containing",
    "starts_with": "has one starting with",
    "is_empty": "is empty",
    "is_not_empty": "is not empty",
}
OPERATORS_BY_KIND = {"number": NUMERIC_OPERATORS, "text": TEXT_OPERATORS, "list": LIST_OPERATORS}
NO_VALUE = {"is_empty", "is_not_empty"}
MULTI_VALUE = {"in", "not_in"}
ALL_OPERATORS = {**NUMERIC_OPERATORS, **TEXT_OPERATORS}  # labels for choices (list labels read the same)


@dataclass(frozen=True)
class Field:
    label: str
    kind: str  # number | text | list
    help: str


FIELDS = {
    "total": Field("Order total", "number", "The order's grand total, in its currency."),
    "subtotal": Field("Subtotal", "number", "Lines less line discounts, before shipping and tax."),
    "quantity": Field("Units", "number", "Units over all lines."),
    "line_count": Field("Lines", "number", "Number of order lines."),
    "country": Field("Ship-to country", "text", "ISO code of the shipping address, e.g. US."),
    "customer_email": Field("Customer e-mail", "text", "e.g. ends with @example.com."),
    "shipping_method": Field("Shipping method", "text", "The hub's method code (else the channel's code)."),
    "currency": Field("Currency", "text", "ISO code, e.g. USD."),
    "payment_status": Field("Payment status", "text", "pending, authorized, paid, …"),
    "source": Field("Channel", "text", "The name of the integration that sent the order."),
    "sku": Field("SKU", "list", "The hub SKUs of its lines (the channel's SKU where unmapped)."),
    "tags": Field("Tags", "list", "The order's tags."),
}
FIELD_CHOICES = [(name, field.label) for name, field in FIELDS.items()]
OPERATOR_CHOICES = [(name, label) for name, label in ALL_OPERATORS.items()]


class ConditionError(ValueError):
    """A condition that cannot be evaluated; the message names the problem for the admin form."""


def _values(value) -> list[str]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _number(value) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ConditionError(f"{value!r} is not a number.") from None
    if not number.is_finite():
        raise ConditionError(f"{value!r} is not a number.")
    return number


def validate(condition) -> dict:
    """A condition cleaned for storage (value as text or a list of texts); ConditionError if it is wrong."""
    if not isinstance(condition, dict):
        raise ConditionError("A condition is an object with field, operator and value.")
    name, operator, value = condition.get("field"), condition.get("operator"), condition.get("value", "")
    field = FIELDS.get(name)
    if field is None:
        raise ConditionError(f"Unknown field {name!r}; one of: {', '.join(FIELDS)}.")
    operators = OPERATORS_BY_KIND[field.kind]
    if operator not in operators:
        raise ConditionError(
            f"{field.label} cannot use {operator!r}; it takes: {', '.join(operators.values())}."
        )
    if operator in NO_VALUE:
        return {"field": name, "operator": operator, "value": ""}
    if operator in MULTI_VALUE:
        values = _values(value)
        if not values:
            raise ConditionError(
                f"{field.label} {operators[operator]}: give one or more values, comma-separated."
            )
        if field.kind == "number":
            values = [str(_number(v)) for v in values]
        return {"field": name, "operator": operator, "value": values}
    text = str(value).strip() if value is not None else ""
    if not text:
        raise ConditionError(f"{field.label} {operators[operator]}: a value is needed.")
    if field.kind == "number":
        text = str(_number(text))
    return {"field": name, "operator": operator, "value": text}


def validate_all(conditions) -> list[dict]:
    if not isinstance(conditions, list):
        raise ConditionError("Conditions are a list.")
    return [validate(c) for c in conditions]


def describe(condition) -> str:
    field = FIELDS.get(condition.get("field"))
    if field is None:
        return str(condition)
    label = OPERATORS_BY_KIND[field.kind].get(condition.get("operator"), condition.get("operator"))
    value = condition.get("value")
    if isinstance(value, list):
        value = ", ".join(value)
    return f"{field.label} {label} {value}".strip()


# --- evaluation ---------------------------------------------------------------------------------------


def facts(order, lines=None) -> dict:
    """What conditions see of an order. `lines` defaults to order.lines.all() (prefetch it for many)."""
    lines = list(order.lines.all()) if lines is None else lines
    method = order.shipping_method.code if order.shipping_method_id and order.shipping_method else ""
    return {
        "total": order.total,
        "subtotal": order.subtotal,
        "quantity": sum(line.quantity for line in lines),
        "line_count": len(lines),
        "country": str((order.shipping_address or {}).get("country") or ""),
        "customer_email": str((order.customer or {}).get("email") or ""),
        "shipping_method": method or order.shipping_method_code,
        "currency": order.currency,
        "payment_status": order.payment_status,
        "source": order.source.name if order.source_id and order.source else "",
        "sku": [line.sku or line.external_sku for line in lines],
        "tags": [str(tag) for tag in (order.tags or [])],
    }


def _text_test(operator, actual: str, value) -> bool:
    a = actual.casefold()
    if operator == "is_empty":
        return a == ""
    if operator == "is_not_empty":
        return a != ""
    if operator in MULTI_VALUE:
        hit = a in {v.casefold() for v in _values(value)}
        return hit if operator == "in" else not hit
    v = str(value).casefold()
    return {
        "eq": a == v,
        "ne": a != v,
        "contains": v in a,
        "not_contains": v not in a,
        "starts_with": a.startswith(v),
        "ends_with": a.endswith(v),
    }[operator]


def _number_test(operator, actual, value) -> bool:
    a, v = Decimal(str(actual)), _number(value)
    return {"eq": a == v, "ne": a != v, "gt": a > v, "gte": a >= v, "lt": a < v, "lte": a <= v}[operator]


def _list_test(operator, actual: list[str], value) -> bool:
    if operator == "is_empty":
        return not actual
    if operator == "is_not_empty":
        return bool(actual)
    if operator == "ne":
        return not any(_text_test("eq", item, value) for item in actual)
    if operator == "not_in":
        return not any(_text_test("in", item, value) for item in actual)
    return any(_text_test(operator, item, value) for item in actual)


def test(condition, order_facts) -> bool:
    field = FIELDS[condition["field"]]
    actual = order_facts[condition["field"]]
    operator, value = condition["operator"], condition.get("value", "")
    if field.kind == "number":
        return _number_test(operator, actual, value)
    if field.kind == "list":
        return _list_test(operator, actual, value)
    return _text_test(operator, str(actual), value)


def evaluate(conditions, match, order_facts) -> tuple[bool, list[dict]]:
    """(matched, [each condition with its `actual` value and whether it `matched`]); no conditions match."""
    results = []
    for condition in conditions:
        try:
            ok = test(condition, order_facts)
        except (ConditionError, KeyError, InvalidOperation):
            ok = False  # a condition broken since it was saved never matches; the log shows which
        actual = order_facts.get(condition.get("field"))
        results.append({**condition, "actual": _jsonable(actual), "matched": ok})
    if not results:
        return True, results
    flags = [r["matched"] for r in results]
    return (any(flags) if match == "any" else all(flags)), results


def _jsonable(value):
    if isinstance(value, Decimal):
        return str(value)
    return value
