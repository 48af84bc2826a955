"""The demo's settings in production: DEBUG off by default, and `manage.py check --deploy` clean with
the production environment the README gives (read from the README, so the two cannot drift)."""

import os
import re
import secrets
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.shop


def readme_production_environment():
    """The ``export NAME=value`` lines of the README's first block under "Running in production"."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Running in production", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    exports = [line.removeprefix("export ") for line in block.splitlines() if line.startswith("export ")]
    assignments = re.findall(r"([A-Z_]+)=('[^']*'|[^\s#]+)", "\n".join(exports))
    return {name: value.strip("'") for name, value in assignments}


def run_manage(*args, **environment):
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={**base, "DJANGO_SETTINGS_MODULE": "shop_demo.settings", **environment})


def settings_value(name, **environment):
    shown = run_manage("shell", "-c", f"from django.conf import settings; print(repr(settings.{name}))", **environment)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip().splitlines()[-1]


def test_the_readme_gives_a_complete_production_environment():
    """The README names the secret, the hosts, HTTPS and the three services."""
    assert {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DJANGO_HTTPS", "DATABASE_URL", "CELERY_BROKER_URL",
            "REDIS_URL"} <= set(readme_production_environment())


def test_check_deploy_passes_with_the_readmes_production_environment():
    """`manage.py check --deploy` reports no issue with that environment (a real secret in place of the placeholder)."""
    environment = readme_production_environment()
    environment["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    # The README's hosts are examples; the check does not connect to them. Local services stand in
    # where the suite has them (the check asks that a broker is configured, not reachable).
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        if os.environ.get(name):
            environment[name] = os.environ[name]
    checked = run_manage("check", "--deploy", **environment)
    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues" in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def test_the_demo_secret_fails_the_deploy_check():
    """Without DJANGO_SECRET_KEY the demo's placeholder key is used, and check --deploy says so."""
    environment = {**readme_production_environment(), "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    environment.pop("DJANGO_SECRET_KEY")
    checked = run_manage("check", "--deploy", **environment)
    assert "security.W009" in checked.stdout + checked.stderr


def test_debug_is_off_unless_django_debug_is_1():
    """No DJANGO_DEBUG: DEBUG is False (the debug 404 listed every URL pattern); DJANGO_DEBUG=1 turns it on."""
    assert settings_value("DEBUG") == "False"
    assert settings_value("DEBUG", DJANGO_DEBUG="0") == "False"
    assert settings_value("DEBUG", DJANGO_DEBUG="1") == "True"


def test_make_demo_sets_django_debug():
    """`make demo` (and the targets it runs) export DJANGO_DEBUG=1; `make test` does not."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    [line] = [line for line in makefile.splitlines() if "export DJANGO_DEBUG" in line]
    targets = line.split(":")[0].split()
    assert {"demo", "serve", "migrate", "seed", "train", "retrain"} <= set(targets)
    assert "test" not in targets


def test_a_missing_page_does_not_list_the_url_patterns(client):
    """With the test settings (DEBUG off, as in production) a 404 is the plain page, no URLconf listing."""
    response = client.get("/no-such-page-anywhere/")
    assert response.status_code == 404
    assert b"URLconf" not in response.content and b"api/events/" not in response.content
