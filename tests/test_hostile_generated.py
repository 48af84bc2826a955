"""Hostile input, generated: hypothesis throws thousands of requests at every write endpoint of the
app (events, profile, erase, retrain, the onboarding form) and none may get a 5xx.

Bodies are drawn from three families: near-valid documents whose fields take hostile values
(NUL characters, huge and negative numbers, NaN, epoch 0, the year 1 at +14:00, unknown event
types and fields, 4 KB strings, unicode), arbitrary JSON (any shape, nested up to a few
levels), and raw bytes under any content type. Every case the trust issue reported goes in as
an explicit example. Each request is sent anonymously, signed in, or as staff; rate limits and
the daily allowance are off for the generated run (so requests reach the validation they
probe) and on for the explicit attacks. The number of requests and their answers by status
class are printed with the test's output.
"""

import collections
import json

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.urls import reverse
from hypothesis import HealthCheck, assume, example, given, settings as hypothesis_settings, strategies as st
from rest_framework.test import APIClient

from recommender.models import EventType
from recommender.strategies.registry import available_keys
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db
GENERATED_EXAMPLES = 450  # each sends 5 requests: one per write endpoint
MINIMUM_REQUESTS = 2000

EVENTS = reverse("recommender:api:events")
PROFILE = reverse("recommender:api:profile")
ERASE = reverse("recommender:api:profile_erase")
TRAIN = reverse("recommender:api:train")
ONBOARDING = reverse("recommender:onboarding")

# --- hostile values -------------------------------------------------------------------------------
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "a\x00b", "x" * 4097, "北京 🚲", "$\\notacommand{$", "<script>", "' OR 1=1 --",
                     "../../etc/passwd", "%00", "\ud7ff", "null", "NaN", "1e309"]),
)
HOSTILE_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**40, 1e308, -1e308, 5e-324, 32503680000]),
)
TIMESTAMPS = st.one_of(
    HOSTILE_NUMBERS, HOSTILE_TEXT,
    st.sampled_from(["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59-14:00",
                     "1970-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2024-02-30T00:00:00Z", "2024-05-01T25:00:00",
                     "2024-05-01T12:00:00+99:00", "10000-01-01T00:00:00Z", "2024-05-01"]),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), HOSTILE_NUMBERS, HOSTILE_TEXT)
ANY_JSON = st.recursive(JSON_SCALARS, lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(HOSTILE_TEXT, children, max_size=4), max_leaves=12)


def event_values(product_ids):
    products = st.one_of(st.sampled_from(product_ids), JSON_SCALARS, st.integers().map(str))
    kinds = st.one_of(st.sampled_from(list(EventType.values)), HOSTILE_TEXT, JSON_SCALARS)
    return st.fixed_dictionaries(
        {"product": products, "event": kinds},
        optional={"value": st.one_of(HOSTILE_NUMBERS, JSON_SCALARS), "dwell_seconds": st.one_of(HOSTILE_NUMBERS, JSON_SCALARS),
                  "timestamp": TIMESTAMPS, "placement": HOSTILE_TEXT, "strategy": HOSTILE_TEXT, "arm": HOSTILE_TEXT,
                  "context": st.one_of(ANY_JSON, st.dictionaries(HOSTILE_TEXT, ANY_JSON, max_size=3)),
                  "dwell_only": st.one_of(st.booleans(), JSON_SCALARS), "token": st.one_of(HOSTILE_TEXT, JSON_SCALARS),
                  "extra": ANY_JSON},
    )


def event_batches(product_ids):
    events = event_values(product_ids)
    return st.one_of(
        st.fixed_dictionaries({"events": st.lists(events, max_size=12)},
                              optional={"batch_id": st.one_of(HOSTILE_TEXT, JSON_SCALARS)}),
        st.fixed_dictionaries({"events": st.lists(events, min_size=1, max_size=2).map(lambda batch: batch * 300)}),
        ANY_JSON,
    )


PROFILE_BODIES = st.one_of(
    st.fixed_dictionaries({}, optional={
        "birth_year": st.one_of(HOSTILE_NUMBERS, JSON_SCALARS), "gender": st.one_of(HOSTILE_TEXT, JSON_SCALARS),
        "country": HOSTILE_TEXT, "region": HOSTILE_TEXT, "city": st.one_of(HOSTILE_TEXT, JSON_SCALARS),
        "language": HOSTILE_TEXT, "personalization_consent": JSON_SCALARS,
        "attributes": st.one_of(ANY_JSON, st.dictionaries(HOSTILE_TEXT, JSON_SCALARS, max_size=25),
                                st.dictionaries(st.sampled_from(["occupation", "customer_type"]), JSON_SCALARS)),
        "updated_at": JSON_SCALARS, "user": JSON_SCALARS, "visitor_key": JSON_SCALARS}),
    ANY_JSON,
)
CONTENT_TYPES = st.sampled_from(["application/json", "application/json", "application/json", "text/plain",
                                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
                                 "application/json; charset=latin-1", "application/octet-stream"])


def encoded(body):
    """A body as the wire carries it: JSON text, or raw bytes the generator drew."""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


RAW_BODIES = st.one_of(st.binary(max_size=200), st.sampled_from([
    b"", b"{", b"[" * 3000 + b"]" * 3000, b'{"events": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b"\xff\xfe\x00", b'{"events": [NaN]}', b'{"events": [Infinity]}', b"null", b"\x00" * 64,
]))


# --- who sends it -------------------------------------------------------------------------------
@pytest.fixture
def senders(db):
    """Clients for an anonymous visitor, a signed-in shopper and a staff member allowed to retrain."""
    User = get_user_model()
    shopper = User.objects.create_user("fuzzed-shopper", password="pw-12345678")
    staff = User.objects.create_user("fuzzed-staff", password="pw-12345678", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_modelversion", "change_modelversion"]))
    signed_in, staffed = APIClient(), APIClient()
    signed_in.force_login(shopper)
    staffed.force_login(staff)
    return {"anonymous": APIClient, "signed_in": lambda: signed_in, "staff": lambda: staffed}


class Tally:
    """Counts answers by status class and keeps the first few server errors with what caused them."""

    def __init__(self):
        self.by_class = collections.Counter()
        self.server_errors = []

    def send(self, client, method, url, body, content_type):
        try:
            response = getattr(client, method)(url, data=body, content_type=content_type)
            status = response.status_code
            detail = response.content[:300]
        except Exception as exc:  # the test client re-raises a view's exception: that is a 500
            status, detail = 500, repr(exc)[:300]
        self.by_class[f"{status // 100}xx"] += 1
        if status >= 500 and len(self.server_errors) < 10:
            self.server_errors.append((method, url, content_type, body[:300], detail))
        return status

    @property
    def total(self):
        return sum(self.by_class.values())


NO_LIMITS = {"EVENTS_THROTTLE_RATE": None, "RECOMMENDATIONS_THROTTLE_RATE": None, "PROFILE_THROTTLE_RATE": None,
             "MAX_CLIENT_EVENTS_PER_DAY": None, "PROFILE_ATTRIBUTES": {"occupation": None,
                                                                       "customer_type": ["retail", "trade"]}}


def test_generated_hostile_requests_never_get_a_server_error(senders, capsys):
    """At least 2,000 generated requests over every write endpoint: 0 answers of 5xx."""
    product_ids = [str(make_product(title=f"Fuzzed {number}").pk) for number in range(3)]
    keys = set(available_keys())
    tally = Tally()

    @given(who=st.sampled_from(sorted(senders)), batch=st.one_of(event_batches(product_ids), RAW_BODIES),
           profile=st.one_of(PROFILE_BODIES, RAW_BODIES), erase=st.one_of(ANY_JSON, RAW_BODIES),
           train=st.one_of(st.fixed_dictionaries({"strategy": JSON_SCALARS}), ANY_JSON, RAW_BODIES),
           picks=st.lists(st.one_of(st.sampled_from(product_ids), HOSTILE_TEXT), max_size=4),
           content_type=CONTENT_TYPES)
    @hypothesis_settings(max_examples=GENERATED_EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))
    def attack(who, batch, profile, erase, train, picks, content_type):
        # A real strategy key would start a real training run; every other value is fair game.
        assume(not (isinstance(train, dict) and train.get("strategy") in keys))
        client = senders[who]()
        tally.send(client, "post", EVENTS, encoded(batch), content_type)
        tally.send(client, "patch", PROFILE, encoded(profile), content_type)
        tally.send(client, "post", ERASE, encoded(erase), content_type)
        tally.send(client, "post", TRAIN, encoded(train), content_type)
        tally.send(client, "post", ONBOARDING, {"product": picks, "next": picks[0] if picks else "/"},
                   "multipart/form-data; boundary=BoUnDaRyStRiNg")

    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, **NO_LIMITS}):
        attack()
    with capsys.disabled():
        print(f"\nhostile input: {tally.total} generated requests to 5 write endpoints; answers "
              f"{dict(sorted(tally.by_class.items()))}; server errors: {tally.by_class['5xx']}")
    assert tally.server_errors == []
    assert tally.total >= MINIMUM_REQUESTS


# --- the attacks the issue reported, as explicit examples -------------------------------------------
def nested(depth):
    return "[" * depth + "]" * depth


ISSUE_CASES = [
    # (name, method, url, body, expected status)
    ("500 forged purchases", "post", EVENTS, {"events": [{"product": "{p}", "event": "purchase"}] * 500}, 400),
    ("a forged cart", "post", EVENTS, {"events": [{"product": "{p}", "event": "cart", "value": 99}]}, 400),
    ("an anonymous rating", "post", EVENTS, {"events": [{"product": "{p}", "event": "rating", "value": 5}]}, 400),
    ("a click credited to an arm", "post", EVENTS,
     {"events": [{"product": "{p}", "event": "click", "strategy": "hybrid", "arm": "b", "placement": "home"}]}, 400),
    ("clicks outnumbering impressions, forged token", "post", EVENTS,
     {"events": [{"product": "{p}", "event": "click", "token": "forged:token"}] * 50}, 201),
    ("the year 1 at +14:00", "post", EVENTS,
     {"events": [{"product": "{p}", "event": "view", "timestamp": "0001-01-01T00:00:00+14:00"}]}, 400),
    ("epoch 0", "post", EVENTS, {"events": [{"product": "{p}", "event": "view", "timestamp": 0}]}, 400),
    ("a negative epoch", "post", EVENTS, {"events": [{"product": "{p}", "event": "view", "timestamp": -86400}]}, 400),
    ("events nested 3,000 deep", "post", EVENTS, '{"events": ' + nested(3000) + "}", 400),
    ("a profile nested 3,000 deep", "patch", PROFILE, '{"attributes": ' + nested(3000) + "}", 400),
    ("20 made-up attribute columns", "patch", PROFILE,
     {"attributes": {f"column_{number}": "x" for number in range(20)}}, 400),
    ("a reused batch id", "post", EVENTS, {"batch_id": "shared", "events": [{"product": "{p}", "event": "view"}]}, 201),
]


@pytest.mark.parametrize("name, method, url, body, expected", ISSUE_CASES, ids=[case[0] for case in ISSUE_CASES])
def test_the_reported_attacks_get_a_clear_4xx_or_are_harmless(name, method, url, body, expected):
    """Each attack from the trust issue, with the default limits on: the documented answer, never a 5xx."""
    product = str(make_product(title="Target").pk)
    text = body if isinstance(body, str) else json.dumps(body).replace("{p}", product)
    response = getattr(APIClient(), method)(url, data=text, content_type="application/json")
    assert response.status_code == expected, response.content[:300]


@example(forwarded=["203.0.113.1", "203.0.113.2", "198.51.100.9, 10.0.0.1"])
@given(forwarded=st.lists(HOSTILE_TEXT, min_size=3, max_size=3))
@hypothesis_settings(max_examples=10, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))
def test_any_x_forwarded_for_shares_the_senders_allowance(forwarded):
    """Rotating X-Forwarded-For (any value, even garbage) gives no fresh allowance and no server error."""
    from django.core.cache import cache

    cache.clear()
    client = APIClient(REMOTE_ADDR="192.0.2.77")
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "EVENTS_THROTTLE_RATE": "2/minute"}):
        answers = [client.post(EVENTS, {"events": []}, format="json", HTTP_X_FORWARDED_FOR=value).status_code
                   for value in forwarded]
    assert answers == [201, 201, 429]
