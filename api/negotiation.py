"""
Which parser reads a request body: the one whose media type the Content-Type names exactly (#14, finding 10d).

DRF's DefaultContentNegotiation picks the first parser for which media_type_matches(parser, content type)
holds, and that treats a wildcard on either side as a match: `Content-Type: */*` or `application/*` was read
as JSON. A Content-Type is a statement about the body, not a range to choose from (RFC 9110 §8.3), so here the
type must equal the parser's, and the only parameter allowed is charset (the JSON parser then refuses any
charset but UTF-8 with a 400). No parser is a 415 `unsupported_media_type`; a request without a body is never
parsed, so it needs no Content-Type.
"""

from django.utils.http import parse_header_parameters
from rest_framework.negotiation import DefaultContentNegotiation

ALLOWED_PARAMETERS = {"charset"}


class StrictContentNegotiation(DefaultContentNegotiation):
    def select_parser(self, request, parsers):
        content_type = request.content_type or ""
        if len(content_type) > self.max_media_type_length:
            return None
        media_type, parameters = parse_header_parameters(content_type)  # type and names lowercased
        if set(parameters) - ALLOWED_PARAMETERS:
            return None
        return next((parser for parser in parsers if parser.media_type == media_type), None)
