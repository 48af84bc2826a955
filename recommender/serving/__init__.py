"""The request path, one module per step: visitor → context → candidates → rules →
explanations → cache (see docs/architecture.md).

``recommender.service`` composes these steps and stays the public entry point that pages, the
template tags, the API and host shops import.
"""
