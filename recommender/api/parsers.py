"""The JSON parser of the app's endpoints: DRF's, refusing documents nested too deeply.

Python's ``json`` recurses once per nesting level: a body of 3,000 ``[`` raised RecursionError
inside DRF's parser (a 500). No document the API accepts nests more than a few levels, so
anything deeper than ``MAX_JSON_DEPTH`` is a 400 before any view code sees it.
"""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

# An event batch is {"events": [{"context": {...}}]}: four levels; twice that leaves room.
MAX_JSON_DEPTH = 8


def json_depth_exceeds(document, limit: int) -> bool:
    """Whether lists and objects in ``document`` nest more than ``limit`` deep (no recursion)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


class BoundedJSONParser(JSONParser):
    """``JSONParser`` with a 400 (not a 500) for documents nested deeper than ``MAX_JSON_DEPTH``."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            document = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep")
        if json_depth_exceeds(document, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep")
        return document


PARSER_CLASSES = [BoundedJSONParser, FormParser, MultiPartParser]
