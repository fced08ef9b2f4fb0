"""JSON input that cannot crash a view: nesting too deep for the decoder is a client error, not a 500.

Python's JSON decoder recurses once per nested array or object and raises ``RecursionError`` (not a
``ValueError``) about a thousand levels down, so ``[[[[...]]]]`` ten thousand deep used to end in a 500
with a traceback. ``loads`` turns it into the ``ValueError`` every caller already handles; the DRF
parser below is the default for every API view.
"""

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError

TOO_DEEP = "The JSON is nested too deeply."


def loads(text: str | bytes):
    """``json.loads``, raising ``ValueError`` for nesting too deep to decode as for any other bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - {TOO_DEEP}") from None
