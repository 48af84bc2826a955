"""recommender.events: validation, all-or-nothing writes, idempotency, ratings, visitors, merging."""

import datetime
import uuid

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory, override_settings
from django.utils import timezone

from recommender import events
from recommender.conf import settings
from recommender.events import EventValidationError, record
from recommender.models import Interaction, Rating, UserProfile
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture
def products():
    return [make_product(title=f"Item {number}") for number in range(3)]


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", password="pw-12345678")


def refused(batch, **kwargs):
    """Record ``batch`` expecting a refusal; return its errors as (index, field) -> message."""
    kwargs.setdefault("visitor_key", "v1")
    with pytest.raises(EventValidationError) as caught:
        record(batch, **kwargs)
    return {(error["index"], error["field"]): error["message"] for error in caught.value.errors}


def test_valid_batch_is_stored_with_every_field(products):
    """Each field of each event lands in its column, in batch order."""
    moment = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    stored = record(
        [
            {"product": str(products[0].pk), "event": "impression", "placement": "home", "strategy": "hybrid",
             "arm": "b", "timestamp": "2024-05-01T12:30:00Z", "context": {"position": 2}},
            {"product": products[1], "event": "view", "dwell_seconds": 42.5, "timestamp": moment.timestamp()},
            {"product": products[2].pk, "event": "rating", "value": 4, "timestamp": moment},
        ],
        visitor_key="visitor-1",
    )
    assert [row.event for row in stored] == ["impression", "view", "rating"]
    first, second, third = Interaction.objects.order_by("pk")
    assert (first.product_id, first.placement, first.strategy, first.arm) == (products[0].pk, "home", "hybrid", "b")
    assert first.context == {"position": 2}
    assert first.timestamp == moment and second.timestamp == moment and third.timestamp == moment
    assert second.dwell_seconds == 42.5 and third.value == 4.0
    assert {row.visitor_key for row in (first, second, third)} == {"visitor-1"}
    assert not Rating.objects.exists(), "an anonymous visitor's rating is only an event until they sign in"


def test_timestamp_defaults_to_now_and_naive_times_are_utc(products):
    """No timestamp means now; a time without a zone is read as UTC."""
    before = timezone.now()
    default, naive = record(
        [{"product": products[0].pk, "event": "click"},
         {"product": products[0].pk, "event": "click", "timestamp": "2024-01-02T03:04:05"}],
        visitor_key="v",
    )
    assert before <= default.timestamp <= timezone.now()
    assert naive.timestamp == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    "change, field, fragment",
    [
        ({"product": None}, "product", "required"),
        ({"product": "not-an-id"}, "product", "not a valid product id"),
        ({"product": True}, "product", "must be a product id"),
        ({"product": 10**40}, "product", "is not a valid product id"),
        ({"event": "like"}, "event", "unknown event 'like'"),
        ({"event": None}, "event", "required"),
        ({"event": "rating"}, "value", "required for a rating"),
        ({"value": "lots"}, "value", "must be a number"),
        ({"value": True}, "value", "boolean"),
        ({"dwell_seconds": -1}, "dwell_seconds", "between 0 and"),
        ({"dwell_seconds": 10**9}, "dwell_seconds", "between 0 and"),
        ({"timestamp": "yesterday"}, "timestamp", "not an ISO 8601"),
        ({"timestamp": 1e20}, "timestamp", "out of range"),
        ({"placement": "x" * 65}, "placement", "at most 64"),
        ({"arm": 3}, "arm", "must be a string"),
        ({"context": [1, 2]}, "context", "must be an object"),
        ({"context": {"x": float("nan")}}, "context", "plain JSON"),
        ({"context": {"blob": "x" * 5000}}, "context", "bytes"),
        ({"dwell": 3}, "dwell", "unknown field"),
    ],
)
def test_a_bad_field_is_named_with_its_index(products, change, field, fragment):
    """Every kind of bad field is reported with the event's index, the field and what is wrong."""
    good = {"product": str(products[0].pk), "event": "view"}
    errors = refused([good, {**good, **change}])
    assert list(errors) == [(1, field)]
    assert fragment in errors[(1, field)]
    assert not Interaction.objects.exists()


def test_far_future_timestamp_is_refused_and_small_skew_allowed(products):
    """A timestamp beyond MAX_CLOCK_SKEW_SECONDS ahead is refused; within it is accepted."""
    now = timezone.now()
    skew = settings.MAX_CLOCK_SKEW_SECONDS
    errors = refused([{"product": products[0].pk, "event": "view", "timestamp": (now + datetime.timedelta(seconds=skew + 60)).isoformat()}])
    assert "in the future" in errors[(0, "timestamp")]
    stored = record(
        [{"product": products[0].pk, "event": "view", "timestamp": (now + datetime.timedelta(seconds=skew - 60)).isoformat()}],
        visitor_key="v",
    )
    assert len(stored) == 1


def test_every_problem_of_the_batch_is_reported_and_nothing_written(products):
    """Errors of several events come back together, in batch order; no event of the batch is stored."""
    missing = str(uuid.uuid4()) if isinstance(products[0].pk, uuid.UUID) else "999999"
    batch = [
        {"product": products[0].pk, "event": "view"},
        {"product": products[1].pk, "event": "teleport"},
        {"product": products[2].pk, "event": "view"},
        {"product": missing, "event": "click"},
        "not an event",
    ]
    errors = refused(batch)
    assert list(errors) == [(1, "event"), (3, "product"), (4, None)]
    assert errors[(3, "product")] == f"unknown product '{missing}'"
    assert not Interaction.objects.exists()


def test_unknown_products_are_found_with_one_query_per_batch(products, django_assert_num_queries):
    """Checking that 300 events' products exist costs one query, not one per event."""
    batch = [{"product": str(products[index % 3].pk), "event": "view"} for index in range(300)]
    events.clean_batch([])  # warm the adapter cache so only the batch's own queries are counted
    with django_assert_num_queries(1):
        rows = events.clean_batch(batch)
    assert len(rows) == 300


@override_settings(RECOMMENDER={"MAX_EVENTS_PER_BATCH": 3})
def test_oversized_batch_is_refused_whole_before_reading_it(products, django_assert_num_queries):
    """A batch over MAX_EVENTS_PER_BATCH is refused as a whole, without a query."""
    batch = [{"product": products[0].pk, "event": "view"}] * 4
    with django_assert_num_queries(0):
        errors = refused(batch)
    assert list(errors) == [(None, "events")]
    assert "at most 3 events, not 4" in errors[(None, "events")]
    assert len(record(batch[:3], visitor_key="v")) == 3


def test_events_must_be_a_list():
    """A dict or a string instead of a list of events is refused with a clear message."""
    assert refused({"product": 1, "event": "view"}) == {(None, "events"): "must be a list of events"}


def test_retried_batch_key_is_stored_once(products):
    """The same batch_key twice stores the batch once and returns the first attempt's rows."""
    batch = [{"product": product.pk, "event": "click"} for product in products]
    first = record(batch, visitor_key="v", batch_key="b-1")
    again = record(batch, visitor_key="v", batch_key="b-1")
    assert Interaction.objects.count() == 3
    assert [row.pk for row in again] == [row.pk for row in first]
    assert [row.dedupe_key for row in first] == ["visitor:v:b-1:0", "visitor:v:b-1:1", "visitor:v:b-1:2"]
    record(batch, visitor_key="v", batch_key="b-2")
    assert Interaction.objects.count() == 6


def test_batch_key_is_checked(products):
    """An overlong batch key is refused before anything is written."""
    errors = refused([{"product": products[0].pk, "event": "view"}], batch_key="k" * 101)
    assert "at most 100" in errors[(None, "batch_id")]


def test_events_need_an_owner(products):
    """Recording without a user or visitor key is a programming error, said plainly."""
    with pytest.raises(ValueError, match="needs a signed-in user or a visitor_key"):
        record([{"product": products[0].pk, "event": "view"}])


def test_signed_in_ratings_upsert_one_rating_per_product(products, user):
    """A signed-in user's rating events upsert Rating: the newest score per product wins."""
    product = products[0]
    record([{"product": product.pk, "event": "rating", "value": 2},
            {"product": product.pk, "event": "rating", "value": 5}], user=user)
    assert Rating.objects.get(user=user, product=product).score == 5
    record([{"product": product.pk, "event": "rating", "value": 3}], user=user)
    assert list(Rating.objects.filter(user=user).values_list("score", flat=True)) == [3]
    assert Interaction.objects.filter(user=user, event="rating").count() == 3


def test_an_old_rating_event_does_not_overwrite_a_newer_rating(products, user):
    """A rating event stamped before the stored rating was last changed leaves the rating alone."""
    record([{"product": products[0].pk, "event": "rating", "value": 4}], user=user)
    record([{"product": products[0].pk, "event": "rating", "value": 1, "timestamp": "2020-01-01T00:00:00Z"}], user=user)
    assert Rating.objects.get(user=user).score == 4


def make_request(session=None):
    request = RequestFactory().get("/")
    request.session = session if session is not None else SessionStore()
    return request


def test_visitor_key_is_stable_and_survives_cycle_key():
    """The visitor id stays the same across calls and across the session key change of a login."""
    request = make_request()
    assert events.visitor_key_for(request, create=False) == ""
    key = events.visitor_key_for(request)
    assert key and events.visitor_key_for(request) == key
    request.session.save()
    old_session_key = request.session.session_key
    request.session.cycle_key()
    assert request.session.session_key != old_session_key
    assert events.visitor_key_for(request, create=False) == key


def test_record_for_request_picks_user_or_visitor(products, user):
    """An anonymous request records for its session's visitor; a signed-in one for the user."""
    from django.contrib.auth.models import AnonymousUser

    request = make_request()
    request.user = AnonymousUser()
    [anonymous] = events.record_for_request(request, [{"product": products[0].pk, "event": "view"}], trust=events.SERVER)
    assert anonymous.user_id is None and anonymous.visitor_key == request.session[settings.VISITOR_SESSION_KEY]
    request.user = user
    [signed_in] = events.record_for_request(request, [{"product": products[0].pk, "event": "view"}], trust=events.SERVER)
    assert signed_in.user_id == user.pk


def test_merge_moves_events_and_ratings_without_copies(products, user):
    """Merging reassigns the visitor's events (no copies), turns rating events into Ratings, and is idempotent."""
    record([{"product": products[0].pk, "event": "view"}], user=user)
    record([{"product": products[1].pk, "event": "click"},
            {"product": products[2].pk, "event": "rating", "value": 4.5}], visitor_key="anon")
    record([{"product": products[0].pk, "event": "view"}], visitor_key="someone-else")

    assert events.merge_visitor_into_user("anon", user) == 2
    assert Interaction.objects.count() == 4
    assert Interaction.objects.filter(user=user).count() == 3
    assert Rating.objects.get(user=user, product=products[2]).score == 4.5
    assert Interaction.objects.get(visitor_key="someone-else").user_id is None

    assert events.merge_visitor_into_user("anon", user) == 0
    assert Interaction.objects.filter(user=user).count() == 3
    assert Rating.objects.filter(user=user).count() == 1


def test_merge_fills_only_blank_profile_fields(user):
    """The anonymous profile fills the account profile's blanks, then is deleted; a withdrawn consent stays withdrawn."""
    UserProfile.objects.create(user=user, country="de", attributes={"customer_type": "retail"})
    UserProfile.objects.create(
        visitor_key="anon", country="fr", city="Paris", birth_year=1990,
        attributes={"customer_type": "business", "occupation": "nurse"}, personalization_consent=False,
    )
    events.merge_visitor_into_user("anon", user)
    profile = UserProfile.objects.get()
    assert (profile.user, profile.country, profile.city, profile.birth_year) == (user, "de", "Paris", 1990)
    assert profile.attributes == {"customer_type": "retail", "occupation": "nurse"}
    assert profile.personalization_consent is False


def test_merge_hands_the_anonymous_profile_to_an_account_without_one(user):
    """When the account has no profile, the anonymous profile becomes the account's."""
    anonymous = UserProfile.objects.create(visitor_key="anon", gender="f")
    events.merge_visitor_into_user("anon", user)
    profile = UserProfile.objects.get()
    assert (profile.pk, profile.user, profile.visitor_key, profile.gender) == (anonymous.pk, user, None, "f")


def test_recent_events_newest_first_without_impressions(products, user):
    """recent_events returns the latest non-impression events, newest first, limited."""
    base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    record(
        [{"product": products[index % 3].pk, "event": event, "timestamp": base + datetime.timedelta(minutes=index)}
         for index, event in enumerate(["view", "impression", "click", "cart", "impression"])],
        visitor_key="anon",
    )
    recent = events.recent_events(visitor_key="anon", limit=2)
    assert [(event.item_id, event.event) for event in recent] == [(str(products[0].pk), "cart"), (str(products[2].pk), "click")]
    assert recent[0].timestamp == (base + datetime.timedelta(minutes=3)).timestamp()
    assert len(events.recent_events(visitor_key="anon", event_types=["impression"])) == 2
    assert events.recent_events(user=user) == []
    assert events.recent_events() == []


def test_page_view_and_dwell_report_are_one_view(products, user):
    """A server-recorded page view plus the beacon's dwell report store one view carrying the dwell."""
    request = make_request()
    request.user = user
    [page_view] = events.record_for_request(request, [{"product": products[0], "event": "view"}], trust=events.SERVER)
    [reported] = events.record_for_request(
        request, [{"product": str(products[0].pk), "event": "view", "dwell_seconds": 12.5, "dwell_only": True}],
        batch_key="beacon-1", trust=events.CLIENT,
    )
    assert reported.pk == page_view.pk
    assert list(Interaction.objects.values_list("event", "dwell_seconds")) == [("view", 12.5)]
    # A retried dwell batch finds the view it joined and stores nothing more.
    events.record_for_request(
        request, [{"product": str(products[0].pk), "event": "view", "dwell_seconds": 12.5, "dwell_only": True}],
        batch_key="beacon-1", trust=events.CLIENT,
    )
    assert Interaction.objects.count() == 1


def test_dwell_report_without_a_view_becomes_a_view(products):
    """A dwell report with no dwell-less view of the product (or only an old one) is stored as a view."""
    old = timezone.now() - datetime.timedelta(hours=3)
    record([{"product": products[0].pk, "event": "view", "timestamp": old}], visitor_key="v")
    record([{"product": products[1].pk, "event": "view"}], visitor_key="someone-else")
    [stored] = record([{"product": products[0].pk, "event": "view", "dwell_seconds": 30, "dwell_only": True},
                       ], visitor_key="v")
    assert (stored.event, stored.dwell_seconds) == ("view", 30)
    assert Interaction.objects.filter(visitor_key="v", event="view").count() == 2
    [other] = record([{"product": products[1].pk, "event": "view", "dwell_seconds": 5, "dwell_only": True}],
                     visitor_key="v")
    assert other.visitor_key == "v" and Interaction.objects.filter(dwell_seconds=5).count() == 1
    assert Interaction.objects.get(visitor_key="someone-else").dwell_seconds is None


def test_dwell_reports_of_a_batch_join_their_views_with_one_query(products):
    """Two page views and their dwell reports in one batch: each view gets its own dwell, one query to find them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    record([{"product": products[0].pk, "event": "view"}, {"product": products[1].pk, "event": "view"}],
           visitor_key="v")
    batch = [{"product": products[1].pk, "event": "view", "dwell_seconds": 8, "dwell_only": True},
             {"product": products[0].pk, "event": "view", "dwell_seconds": 3, "dwell_only": True}]
    events.clean_batch([])  # warm the adapter cache so only the batch's own queries are counted
    with CaptureQueriesContext(connection) as captured:
        record(batch, visitor_key="v")
    statements = [query["sql"].split()[0].upper() for query in captured.captured_queries
                  if "SAVEPOINT" not in query["sql"].upper()]
    # The products exist (1), the views to join (1), their new dwell (1); nothing inserted.
    assert statements == ["SELECT", "SELECT", "UPDATE"]
    stored = dict(Interaction.objects.values_list("product_id", "dwell_seconds"))
    assert stored == {products[0].pk: 3, products[1].pk: 8}


def test_dwell_only_needs_a_view_with_dwell_seconds(products):
    """dwell_only on another event, without dwell_seconds, or not a boolean is refused."""
    errors = refused([{"product": products[0].pk, "event": "click", "dwell_only": True},
                      {"product": products[0].pk, "event": "view", "dwell_only": True},
                      {"product": products[0].pk, "event": "view", "dwell_seconds": 3, "dwell_only": "yes"}])
    assert list(errors) == [(0, "dwell_only"), (1, "dwell_only"), (2, "dwell_only")]


# --- trust levels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("event", ["cart", "purchase"])
def test_client_batches_may_not_hold_cart_or_purchase(products, event):
    """A browser's cart or purchase is refused naming the setting that would accept it; the server's is stored."""
    errors = refused([{"product": products[0].pk, "event": event}], trust=events.CLIENT)
    assert "shop's own server code" in errors[(0, "event")]
    assert "ACCEPT_CLIENT_CART_AND_PURCHASE" in errors[(0, "event")]
    assert not Interaction.objects.exists()
    assert len(record([{"product": products[0].pk, "event": event}], visitor_key="v1", trust=events.SERVER)) == 1


def test_a_host_may_opt_in_to_client_cart_and_purchase(products):
    """ACCEPT_CLIENT_CART_AND_PURCHASE lets a client batch carry them (a checkout that runs in the browser)."""
    with override_settings(RECOMMENDER={"ACCEPT_CLIENT_CART_AND_PURCHASE": True}):
        stored = record([{"product": products[0].pk, "event": "purchase"}], visitor_key="v1", trust=events.CLIENT)
    assert [row.event for row in stored] == ["purchase"]


def test_client_ratings_need_a_signed_in_user(products, user):
    """An anonymous client's rating is refused; a signed-in client's is stored and sets the Rating."""
    errors = refused([{"product": products[0].pk, "event": "rating", "value": 5}], trust=events.CLIENT)
    assert "signed-in user" in errors[(0, "event")]
    record([{"product": products[0].pk, "event": "rating", "value": 5}], user=user, trust=events.CLIENT)
    assert Rating.objects.get(user=user).score == 5


def test_client_events_are_stamped_with_the_servers_clock(products):
    """A client's timestamp is checked but the stored time is the server's: a browser cannot backdate."""
    before = timezone.now()
    [stored] = record([{"product": products[0].pk, "event": "click", "timestamp": "2020-06-01T00:00:00Z"}],
                      visitor_key="v1", trust=events.CLIENT)
    assert stored.timestamp >= before
    assert Interaction.objects.get().timestamp >= before


def test_an_unknown_trust_level_is_a_programming_error(products):
    """trust must be SERVER or CLIENT; anything else is a ValueError, not a silent default."""
    with pytest.raises(ValueError, match="trust must be one of"):
        record([{"product": products[0].pk, "event": "view"}], visitor_key="v1", trust="browser")


# --- timestamps -------------------------------------------------------------------------------------
@pytest.mark.parametrize("timestamp", [0, -1, -86400 * 365, "1999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00",
                                       "0001-01-01T00:00:00-14:00", datetime.datetime(1970, 1, 1)])
def test_timestamps_before_2000_are_refused(products, timestamp):
    """Epoch 0, negative epochs, the year 1 (with any offset) and anything before 2000 are a 400 naming the field."""
    errors = refused([{"product": products[0].pk, "event": "view", "timestamp": timestamp}])
    assert list(errors) == [(0, "timestamp")]
    assert "2000-01-01" in errors[(0, "timestamp")]


def test_the_first_moment_of_2000_is_accepted(products):
    """The bound is inclusive: 2000-01-01T00:00:00Z is stored as given by server code."""
    [stored] = record([{"product": products[0].pk, "event": "view", "timestamp": "2000-01-01T00:00:00Z"}],
                      visitor_key="v1")
    assert stored.timestamp == events.EARLIEST_TIMESTAMP


# --- batch keys are scoped to their owner ---------------------------------------------------------------
def test_two_visitors_reusing_a_batch_id_are_both_stored(products, user):
    """Batch ids are scoped to their owner: another visitor's (or account's) batch with the same id is theirs."""
    batch = [{"product": products[0].pk, "event": "click"}]
    record(batch, visitor_key="first", batch_key="shared-id")
    record(batch, visitor_key="second", batch_key="shared-id")
    record(batch, user=user, batch_key="shared-id")
    record(batch, visitor_key="first", batch_key="shared-id")  # a retry of the first: stored once
    owners = sorted((row.user_id or 0, row.visitor_key) for row in Interaction.objects.all())
    assert owners == [(0, "first"), (0, "second"), (user.pk, "")]


def test_a_long_owner_and_batch_key_still_fit_the_dedupe_column(products):
    """A 64-character visitor key and a 100-character batch id are hashed into the 128-character column."""
    batch = [{"product": products[0].pk, "event": "click"}] * 3
    first = record(batch, visitor_key="v" * 64, batch_key="b" * 100)
    again = record(batch, visitor_key="v" * 64, batch_key="b" * 100)
    assert [row.pk for row in again] == [row.pk for row in first]
    assert all(len(row.dedupe_key) <= 128 for row in first)
    assert Interaction.objects.count() == 3


# --- the daily allowance of client events -----------------------------------------------------------------
@override_settings(RECOMMENDER={"MAX_CLIENT_EVENTS_PER_DAY": 5})
def test_a_client_batch_past_the_daily_allowance_is_refused_whole(products):
    """With 5 a day, 3 + 2 fit, a third batch of 1 is refused with a Retry-After, and nothing of it is stored."""
    batch = [{"product": products[0].pk, "event": "impression"}]
    record(batch * 3, visitor_key="v1", trust=events.CLIENT)
    record(batch * 2, visitor_key="v1", trust=events.CLIENT, batch_key="b-2")
    with pytest.raises(events.EventQuotaExceeded) as caught:
        record(batch, visitor_key="v1", trust=events.CLIENT)
    assert "at most 5" in str(caught.value) and 1 <= caught.value.retry_after <= 86400
    assert Interaction.objects.count() == 5
    # A retry of a stored batch is answered (nothing new), another visitor has an allowance of their own,
    # and the server's own events are not counted against anyone.
    assert len(record(batch * 2, visitor_key="v1", trust=events.CLIENT, batch_key="b-2")) == 2
    record(batch, visitor_key="v2", trust=events.CLIENT)
    record(batch, visitor_key="v1", trust=events.SERVER)
    assert Interaction.objects.count() == 7


@override_settings(RECOMMENDER={"MAX_CLIENT_EVENTS_PER_DAY": 2})
def test_the_allowance_frees_up_as_events_leave_the_24_hour_window(products):
    """Retry-After points at the moment the oldest counted event is 24 hours old."""
    old = timezone.now() - datetime.timedelta(hours=23)
    record([{"product": products[0].pk, "event": "view", "timestamp": old}], visitor_key="v1")
    record([{"product": products[0].pk, "event": "view"}], visitor_key="v1", trust=events.CLIENT)
    with pytest.raises(events.EventQuotaExceeded) as caught:
        record([{"product": products[0].pk, "event": "view"}], visitor_key="v1", trust=events.CLIENT)
    assert 3500 <= caught.value.retry_after <= 3601


# --- ratings follow the events' own time -------------------------------------------------------------------
def test_a_rating_sent_late_with_an_older_time_does_not_overwrite_a_newer_score(products, user):
    """Scores are ordered by their events' time, not by arrival: the late, older score stays in the log only."""
    product = products[0]
    record([{"product": product.pk, "event": "rating", "value": 5, "timestamp": "2025-01-02T00:00:00Z"}], user=user)
    record([{"product": product.pk, "event": "rating", "value": 1, "timestamp": "2025-01-01T00:00:00Z"}], user=user)
    rating = Rating.objects.get(user=user)
    assert rating.score == 5 and rating.rated_at.isoformat() == "2025-01-02T00:00:00+00:00"
    record([{"product": product.pk, "event": "rating", "value": 3, "timestamp": "2025-01-03T00:00:00Z"}], user=user)
    assert Rating.objects.get(user=user).score == 3
    assert Interaction.objects.filter(event="rating").count() == 3


def test_a_client_rating_resent_with_a_slow_clock_replaces_the_old_score(products, user):
    """The browser's clock no longer matters: a client's re-sent rating is the newest because the server stamps it."""
    product = products[0]
    record([{"product": product.pk, "event": "rating", "value": 2}], user=user, trust=events.CLIENT)
    behind = (timezone.now() - datetime.timedelta(hours=2)).isoformat()
    record([{"product": product.pk, "event": "rating", "value": 4, "timestamp": behind}], user=user,
           trust=events.CLIENT)
    assert Rating.objects.get(user=user).score == 4


# --- distinct visitors per day -------------------------------------------------------------------------------
def test_visitor_days_count_each_anonymous_visitor_and_each_account(products, user):
    """Three anonymous visitors and one account are four visitor-days; one visitor's repeats count once."""
    for visitor_key in ("v1", "v2", "v3", "v3"):
        record([{"product": products[0].pk, "event": "view"}], visitor_key=visitor_key)
    record([{"product": products[0].pk, "event": "view"}], user=user)
    record([{"product": products[1].pk, "event": "view"}], visitor_key="v1")
    counted = events.visitor_days_by_product(Interaction.objects.all())
    assert counted == [(products[0].pk, 4), (products[1].pk, 1)]
