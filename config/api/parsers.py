"""
The API's JSON parser: DRF's, plus the checks that keep hostile bodies from turning into 500s (#7).

* Nesting deeper than MAX_DEPTH (no legitimate body nests past 5) is refused: 100,000 `[` would otherwise
  raise RecursionError in the decoder, or later in whatever walks the data.
* Strings, keys included, must be text PostgreSQL can store: no NUL character (text and jsonb both refuse
  it) and no lone surrogate (a `\\ud800` escape, which is not UTF-8 and fails when the driver encodes it).
  DRF's CharField refuses NUL on its own, but free-form objects (addresses, settings) do not.
"""

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


def check(data) -> None:
    """Raise ParseError past MAX_DEPTH, ValidationError naming the field of any bad string (iterative, so
    its own depth is no concern)."""
    errors: dict[str, list[str]] = {}
    stack = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise exceptions.ParseError(f"Nested deeper than {MAX_DEPTH} levels.")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and (problem := _bad_text(key)):
                    errors.setdefault(path or "__all__", []).append(f"Key {key!r}: {problem}")
                stack.append((item, name, depth + 1))
        elif isinstance(value, str) and (problem := _bad_text(value)):
            errors.setdefault(path or "__all__", []).append(problem)
    if errors:
        raise exceptions.ValidationError(errors)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(f"Nested deeper than {MAX_DEPTH} levels.") from None
        check(data)
        return data
