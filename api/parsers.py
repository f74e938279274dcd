"""
The API's JSON parser: DRF's, plus the checks that keep hostile bodies from turning into 500s (#7).

* Nesting deeper than MAX_DEPTH (no legitimate body nests past 5) is refused: 100,000 `[` would otherwise
  raise RecursionError in the decoder, or later in whatever walks the data.
* Strings, keys included, must be text PostgreSQL can store: no NUL character (text and jsonb both refuse
  it) and no lone surrogate (a `\\ud800` escape, which is not UTF-8 and fails when the driver encodes it).
  DRF's CharField refuses NUL on its own, but free-form objects (addresses, settings) do not.
* The body is UTF-8 (RFC 8259; docs/connectors/contract.md, "Conventions"): a Content-Type naming another
  charset is refused (400, as DRF refuses a charset it does not know). Decoded as UTF-16 or UTF-32, a body
  would also slip its escapes past the byte search below.
"""

import codecs
import io
import re

from rest_framework import exceptions, parsers

MAX_DEPTH = 32


def _bad_text(value: str) -> str | None:
    if "\x00" in value:
        return "NUL characters are not allowed."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Not valid UTF-8 text (lone surrogate escape)."
    return None


# Only a JSON escape can put a NUL or a lone surrogate in a parsed string (raw NUL bytes are invalid JSON and
# raw invalid UTF-8 fails decoding): bodies without one skip the per-string check.
SUSPICIOUS = re.compile(rb"\\u(0000|d[89a-f])", re.IGNORECASE)


def check_depth(data) -> None:
    """ParseError past MAX_DEPTH. Iterative, so that its own depth is no concern."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth >= MAX_DEPTH:
            raise exceptions.ParseError(f"Nested deeper than {MAX_DEPTH} levels.")
        for item in value.values() if type(value) is dict else value:
            if type(item) is dict or type(item) is list:
                stack.append((item, depth + 1))


def check_strings(data) -> None:
    """ValidationError naming the field of every string (or key) PostgreSQL cannot store."""
    errors: dict[str, list[str]] = {}
    stack = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if problem := _bad_text(value):
                errors.setdefault(path or "__all__", []).append(problem)
            continue
        if not isinstance(value, dict | list):
            continue
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(key, str) and (problem := _bad_text(key)):
                errors.setdefault(path or "__all__", []).append(f"Key {key!r}: {problem}")
            stack.append((item, f"{path}.{key}" if path else str(key)))
    if errors:
        raise exceptions.ValidationError(errors)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        charset = (parser_context or {}).get("encoding") or "utf-8"
        try:
            utf8 = codecs.lookup(charset).name == "utf-8"
        except LookupError:
            utf8 = False
        if not utf8:
            raise exceptions.ParseError(f'Unsupported charset "{charset}": JSON bodies are UTF-8.')
        raw = stream.read() if stream is not None else b""
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(f"Nested deeper than {MAX_DEPTH} levels.") from None
        if isinstance(data, dict | list):
            check_depth(data)
        if SUSPICIOUS.search(raw):
            check_strings(data)
        return data
