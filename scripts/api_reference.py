#!/usr/bin/env python3
"""
Writes docs/connectors/reference.md, the connector guide's reference of every endpoint, from the OpenAPI
document the hub serves at /api/v1/schema/ (drf-spectacular's generator, in this process: no server, no
database). Nothing in it is typed by hand, so it cannot drift from the API; tests/docs/test_api_reference.py
fails when the committed file is not what this script writes today.

    .venv/bin/python scripts/api_reference.py            # rewrite the file
    .venv/bin/python scripts/api_reference.py --check    # exit 1 if it is out of date

Written by hand because the Markdown renderers for OpenAPI (widdershins and the like) are Node programs
that print every schema inline; connector authors asked for one page with the grant each call needs.
"""

import argparse
import difflib
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "connectors" / "reference.md"
METHODS = ("get", "post", "put", "patch", "delete")
# An integer column's range is the database's (int32 on PostgreSQL, int64 on SQLite), not a rule of the API:
# left out, so the reference reads the same whichever database the settings point at.
STORAGE_LIMIT = 2**31 - 1
STORAGE_FORMATS = {"int32", "int64"}


def openapi() -> dict:
    """The served document, as plain JSON data (lazy translation strings and all resolved)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema, renderer_context={}))


NULL = {"type": "null"}


def nullable(schema: dict) -> bool:
    """3.0's `nullable`, or 3.1's "null" among the types or the alternatives."""
    kind = schema.get("type")
    return bool(
        schema.get("nullable")
        or (isinstance(kind, list) and "null" in kind)
        or any(NULL in schema.get(combined, ()) for combined in ("anyOf", "oneOf"))
    )


def anchor(name: str) -> str:
    return "schema-" + name.lower()


def one_line(text: str | None) -> str:
    """Table cells are one line; pipes would end the cell."""
    return " ".join((text or "").split()).replace("|", "\\|")


def type_of(schema: dict) -> str:
    """A short, linked type: `string (date-time)`, [Order](#schema-order), array of [OrderLine](#…), …"""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{anchor(name)})"
    for combined in ("allOf", "anyOf", "oneOf"):
        if combined in schema:
            parts = [type_of(part) for part in schema[combined] if part != NULL]
            return parts[0] if len(parts) == 1 else " or ".join(parts)
    kind = schema.get("type", "any")
    if isinstance(kind, list):  # OpenAPI 3.1: ["string", "null"] is a string that may be null
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else " or ".join(kinds)
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:
        values = schema["additionalProperties"]
        return "object" if values in ({}, True) else f"object of {type_of(values)}"
    if "format" in schema and schema["format"] not in STORAGE_FORMATS:
        return f"{kind} ({schema['format']})"
    return kind


def constraints(schema: dict) -> list[str]:
    notes = []
    if schema.get("readOnly"):
        notes.append("read-only")
    if nullable(schema):
        notes.append("may be null")
    if "const" in schema:
        notes.append(f"always `{schema['const']}`")
    if "enum" in schema:
        notes.append(
            "one of " + ", ".join(f"`{value}`" for value in schema["enum"] if value not in ("", None))
        )
    for key, word in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", "min"),
        ("maximum", "max"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ):
        if key in schema and not (key in ("minimum", "maximum") and abs(schema[key]) >= STORAGE_LIMIT):
            notes.append(f"{word} {schema[key]}")
    return notes


def properties_table(schema: dict) -> list[str]:
    required = set(schema.get("required", ()))
    rows = ["| field | type | required | notes |", "|---|---|---|---|"]
    for name, field in schema.get("properties", {}).items():
        notes = constraints(field)
        if field.get("description"):
            notes.append(one_line(field["description"]))
        mark = "yes" if name in required else ""
        rows.append(f"| `{name}` | {type_of(field)} | {mark} | {'; '.join(notes)} |")
    return rows


def operation_section(method: str, path: str, operation: dict, common_errors: dict) -> list[str]:
    out = [f"### `{method.upper()} {path}`", ""]
    if operation.get("summary"):
        out += [f"**{one_line(operation['summary'])}.**", ""]
    if operation.get("description"):
        out += [operation["description"].strip(), ""]
    grant = operation.get("x-required-grant")
    out += [f"Grant: `{grant}`." if grant else "Grant: none — any valid key.", ""]

    parameters = operation.get("parameters", [])
    if parameters:
        out += ["| parameter | in | type | notes |", "|---|---|---|---|"]
        for parameter in parameters:
            notes = constraints(parameter.get("schema", {}))
            if parameter.get("required"):
                notes.insert(0, "required")
            if parameter.get("description") and "enum" not in parameter.get("schema", {}):
                notes.append(one_line(parameter["description"]))
            kind = type_of(parameter.get("schema", {}))
            out.append(f"| `{parameter['name']}` | {parameter['in']} | {kind} | {'; '.join(notes)} |")
        out.append("")

    body = operation.get("requestBody")
    if body:
        media = body.get("content", {}).get("application/json", {})
        out += [
            f"Body: {type_of(media.get('schema', {}))}{' (required)' if body.get('required') else ''}.",
            "",
        ]

    out += ["| answer | body | when |", "|---|---|---|"]
    usual = []
    for status, response in sorted(operation.get("responses", {}).items()):
        when = one_line(response.get("description"))
        if status >= "400" and when == common_errors.get(status):
            usual.append(status)
            continue
        media = response.get("content", {}).get("application/json")
        shape = type_of(media["schema"]) if media else "—"
        out.append(f"| {status} | {shape} | {when or 'success'} |")
    out += ["", f"Errors: {', '.join(usual)} ([the usual codes](#errors)).", ""] if usual else [""]
    return out


def webhooks_section(webhooks: dict) -> list[str]:
    """The event types, each with the grant its subscription needs and its body; the headers they share."""
    if not webhooks:
        return []
    out = [
        "## Webhooks",
        "",
        "What the hub POSTs to a URL subscribed to an event type (`POST /webhooks`); *Grant* is the read grant",
        "the subscribing key must hold. Any 2xx answer acknowledges a delivery; anything else is retried.",
        "",
        "| event | grant | body |",
        "|---|---|---|",
    ]
    headers: list[dict] = []
    for name, operations in webhooks.items():
        operation = operations["post"]
        grant = operation.get("x-required-grant")
        media = operation["requestBody"]["content"]["application/json"]
        out.append(f"| `{name}` | {f'`{grant}`' if grant else 'none'} | {type_of(media['schema'])} |")
        headers = headers or operation.get("parameters", [])
    if headers:
        out += ["", "Every delivery carries these headers:", "", "| header | type | notes |", "|---|---|---|"]
        for header in headers:
            notes = constraints(header.get("schema", {}))
            if header.get("required"):
                notes.insert(0, "always")
            if header.get("description"):
                notes.append(one_line(header["description"]))
            out.append(f"| `{header['name']}` | {type_of(header.get('schema', {}))} | {'; '.join(notes)} |")
    return [*out, ""]


def usual_errors(document: dict) -> dict[str, str]:
    """Per error status, the description most operations give it: the reference lists those once."""
    seen: dict[str, Counter] = {}
    for operations in document["paths"].values():
        for method in METHODS:
            for status, response in operations.get(method, {}).get("responses", {}).items():
                if status >= "400":
                    seen.setdefault(status, Counter())[one_line(response.get("description"))] += 1
    return {status: counts.most_common(1)[0][0] for status, counts in sorted(seen.items())}


def render(document: dict) -> str:
    info = document["info"]
    out = [
        "<!-- Generated by scripts/api_reference.py from the OpenAPI document; do not edit by hand. -->",
        "# 12. API reference",
        "",
        f"{info['title']} {info['version']}. {info['description']}",
        "",
        "Every endpoint the hub serves under `/api/v1/`, generated from the OpenAPI document it serves at",
        "`/api/v1/schema/` (browsable at `/api/v1/docs/`). Every call takes `Authorization: Bearer <key>`;",
        "*Grant* is what the key must hold. Every error answer is an [Error](#schema-error), described in",
        "[chapter 10](10-errors.md); every write takes an `Idempotency-Key` header (a POST's is recorded), and",
        "every answer carries an `X-Request-Id` (in an error also its `request_id`): quote it to support.",
        "The events the hub POSTs to your webhooks are listed under [Webhooks](#webhooks).",
        "",
    ]
    by_tag: dict[str, list] = {}
    for path, operations in document["paths"].items():
        for method in METHODS:
            if method in operations:
                operation = operations[method]
                tag = (operation.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((method, path, operation))

    common_errors = usual_errors(document)
    out += ["## Errors", "", "Unless an endpoint says otherwise, an error status means:", ""]
    out += ["| status | codes |", "|---|---|"]
    out += [f"| {status} | {text} |" for status, text in common_errors.items()]
    out += ["", "## Endpoints", ""]
    for tag, operations in by_tag.items():
        links = ", ".join(f"`{method.upper()} {path}`" for method, path, _ in operations)
        out.append(f"* **[{tag}](#{tag.replace('_', '-')})** — {links}")
    out.append("")
    for tag, operations in by_tag.items():
        out += [f"## {tag}", ""]
        for method, path, operation in operations:
            out += operation_section(method, path, operation, common_errors)

    out += webhooks_section(document.get("webhooks", {}))
    out += ["## Schemas", ""]
    for name, schema in sorted(document["components"]["schemas"].items()):
        out += [f'<a id="{anchor(name)}"></a>', "", f"### {name}", ""]
        if schema.get("description"):
            out += [one_line(schema["description"]), ""]
        if "properties" in schema:
            out += properties_table(schema)
        elif "enum" in schema:
            out.append("One of " + ", ".join(f"`{value}`" for value in schema["enum"] if value) + ".")
        else:
            out.append(f"{type_of(schema)}.")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    args = parser.parse_args()
    text = render(openapi())
    current = TARGET.read_text() if TARGET.exists() else ""
    if args.check:
        if text == current:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), text.splitlines(), "committed", "generated", lineterm=""
        )
        print("\n".join(list(diff)[:80]))
        print(f"{TARGET.name} is out of date: run .venv/bin/python scripts/api_reference.py")
        return 1
    TARGET.write_text(text)
    print(f"wrote {TARGET.name}: {len(text.splitlines())} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
