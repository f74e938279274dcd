"""
An integration's settings and mappings as its connector defines them: validation against the connector's JSON
Schema (messages that never repeat a secret), the public and secret halves, merging an edit over what is
stored, the defaults, and the JSON mappings' kinds. Pure rules on values: nothing here writes a row.
"""

from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from core.targets import check_target_url

from .models import Connector, Integration

_TYPE_NAMES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
}


def check_settings_schema(schema):
    """Raise ValidationError unless `schema` is a usable JSON Schema object schema."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValidationError(f"Not a valid JSON Schema: {exc.message}") from exc
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise ValidationError('The settings schema must describe an object ("type": "object").')


def _message(error, secret: bool) -> str:
    # Messages never repeat the submitted value: it may be a secret, and they end up in pages and logs.
    v, expected = error.validator, error.validator_value
    if v == "type":
        names = expected if isinstance(expected, list) else [expected]
        return "Must be " + " or ".join(_TYPE_NAMES.get(n, n) for n in names) + "."
    if v == "enum":
        return "Must be one of: " + ", ".join(str(e) for e in expected) + "."
    if v == "format":
        return f"Must be a valid {expected}."
    if v in ("minLength", "maxLength"):
        return f"Must be at {'least' if v == 'minLength' else 'most'} {expected} characters."
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most"}.get(
            v, "more than" if "Min" in v else "less than"
        )
        return f"Must be {word} {expected}."
    if v == "pattern":
        return "Has the wrong format." if secret else f"Must match the pattern {expected}."
    return "Invalid value." if secret else error.message


def settings_errors(connector: Connector, values: dict, *, require_complete=True) -> dict[str, list[str]]:
    """Validate settings against the connector's JSON Schema; {} when valid, else messages per field."""
    schema = connector.settings_schema or {}
    if not isinstance(values, dict):
        return {"__all__": ["Settings must be a JSON object."]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    secrets = connector.secret_fields
    errors: dict[str, list[str]] = {}
    for error in validator.iter_errors(values):
        if error.validator == "required" and not error.path:
            if not require_complete:
                continue
            for name in missing_required(connector, values):
                errors.setdefault(name, []).append("This setting is required.")
            continue
        if error.validator == "additionalProperties" and not error.path:
            for name in sorted(set(values) - set(schema.get("properties", {}))):
                errors.setdefault(name, []).append("Unknown setting.")
            continue
        field = str(error.path[0]) if error.path else "__all__"
        # An object-level error's instance is the whole settings dict, secrets included.
        hides_secret = field in secrets or (field == "__all__" and bool(secrets))
        errors.setdefault(field, []).append(_message(error, hides_secret))
    base_url = values.get("base_url")
    if connector.manifest and isinstance(base_url, str) and base_url and "base_url" not in errors:
        # The hub calls a manifest connector under its base_url: the webhook URLs' SSRF rule holds for it.
        try:
            check_target_url(base_url, field="base_url")
        except ValidationError as exc:
            errors.update(exc.message_dict)
    return {k: sorted(set(v)) for k, v in errors.items()}


def missing_required(connector: Connector, values: dict) -> list[str]:
    required = (connector.settings_schema or {}).get("required", [])
    return [name for name in required if values.get(name) in (None, "")]


def is_configured(integration: Integration) -> bool:
    return not missing_required(integration.connector, full_settings(integration))


def full_settings(integration: Integration) -> dict:
    """
    All of an integration's settings, its secrets decrypted: for the hub's own use (manifest calls,
    validation, the form's merge), never for an answer, a page or an export (those use public_settings).
    The one reader of `secret_settings`.
    """
    return {**(integration.secret_settings or {}), **(integration.settings or {})}


def split_settings(connector: Connector, values: dict) -> tuple[dict, dict]:
    """(public, secret) halves of `values`: the schema's "writeOnly" properties are the secrets."""
    secrets = connector.secret_fields
    return (
        {k: v for k, v in values.items() if k not in secrets},
        {k: v for k, v in values.items() if k in secrets},
    )


def merge_settings(connector: Connector, current: dict, submitted: dict) -> dict:
    """Submitted settings over the current ones; a blank secret keeps the stored secret."""
    merged = dict(submitted)
    for name in connector.secret_fields:
        if merged.get(name) in (None, "") and current.get(name) not in (None, ""):
            merged[name] = current[name]
    return {k: v for k, v in merged.items() if v is not None and v != ""}


def setting_defaults(connector: Connector) -> dict:
    """What each setting means while unset: its schema `default`, and false for a boolean without one."""
    properties = (connector.settings_schema or {}).get("properties", {})
    defaults = {}
    for name, spec in properties.items():
        if "default" in spec:
            defaults[name] = spec["default"]
        elif spec.get("type") == "boolean":
            defaults[name] = False
    return defaults


def setting(integration: Integration, name: str):
    """
    The value of one of `integration`'s public settings as the hub acts on it: what is stored, else the
    schema's default (see setting_defaults), else None. Every reader of a setting's effect goes through here,
    so an integration saved before a setting existed, or without it, behaves as the schema's default says.
    """
    stored = (integration.settings or {}).get(name)
    if stored is not None:
        return stored
    return setting_defaults(integration.connector).get(name)


def public_settings(integration: Integration) -> dict:
    """Settings without their secrets (for export, API answers and pages)."""
    secrets = integration.connector.secret_fields
    return {k: v for k, v in (integration.settings or {}).items() if k not in secrets}


# SKU and shipping-method mappings are rows (inventory.SkuMapping, orders.ShippingMethodMapping): the order
# flow reads those, so the JSON `Integration.mappings` holds only connector-specific kinds (e.g. locations).
MODEL_MAPPING_KINDS = ("skus", "shipping_methods")
MODEL_MAPPING_SECTIONS = {"skus": "SKU mappings", "shipping_methods": "Shipping method mappings"}


def json_mapping_kinds(connector: Connector) -> list[str]:
    """The mapping kinds of `connector` kept in the JSON: all it uses but the row kinds."""
    return [kind for kind in connector.mapping_kinds or [] if kind not in MODEL_MAPPING_KINDS]


def mapping_errors(connector: Connector, mappings) -> dict[str, list[str]]:
    """Validate the JSON mappings: connector-specific kinds of {external: hub} text; {} when valid."""
    if not isinstance(mappings, dict):
        return {"mappings": ["Mappings must be a JSON object of {kind: {external: hub}}."]}
    errors = []
    allowed = set(json_mapping_kinds(connector))
    for kind, pairs in mappings.items():
        if kind in MODEL_MAPPING_KINDS:
            section = MODEL_MAPPING_SECTIONS[kind]
            errors.append(
                f"{kind!r}: {section} are rows, not JSON. Edit them in the “{section}” section of the "
                "integration's change page."
            )
        elif kind not in allowed:
            errors.append(
                f"Unknown mapping kind {kind!r}; this connector's JSON kinds: {', '.join(sorted(allowed)) or 'none'}."
            )
        elif not isinstance(pairs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in pairs.items()
        ):
            errors.append(f"{kind}: must map non-empty text to non-empty text.")
    return {"mappings": errors} if errors else {}
