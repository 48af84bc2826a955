"""A small, self-contained API docs page built from the OpenAPI schema (no CDN assets)."""

from django.shortcuts import render
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def endpoints_of(schema):
    """The schema's operations as rows for the docs page."""
    rows = []
    for path, operations in schema.get("paths", {}).items():
        for method in HTTP_METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            rows.append({
                "method": method.upper(),
                "path": path,
                "summary": operation.get("summary", ""),
                "description": operation.get("description", ""),
                "parameters": [
                    {"name": parameter["name"], "where": parameter["in"], "required": parameter.get("required", False),
                     "description": parameter.get("description", "")}
                    for parameter in operation.get("parameters", [])
                ],
                "responses": sorted(operation.get("responses", {})),
            })
    return rows


def api_docs(request):
    """List every endpoint of the API with its parameters, and link the raw schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return render(request, "recommender/api_docs.html", {
        "info": schema.get("info", {}),
        "endpoints": endpoints_of(schema),
        "schema_url": reverse("recommender:api:schema"),
    })
