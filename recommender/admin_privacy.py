"""Admin actions on user profiles: export or erase the data of the selected people.

Listed on ``UserProfileAdmin``; a profile stands for its user (or anonymous visitor), and the
action covers all of that person's data, not only the profile row.
"""

import json

from django.contrib import admin, messages
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _

from . import privacy


def _owners(queryset):
    return [(profile.user, "" if profile.user_id else profile.visitor_key)
            for profile in queryset.select_related("user")]


@admin.action(description=_("Export the selected people's data (JSON)"), permissions=["view"])
def export_people_data(model_admin, request, queryset):
    exports = [privacy.export_user_data(user, visitor_key) for user, visitor_key in _owners(queryset)]
    response = HttpResponse(json.dumps(exports, indent=2), content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="recommender-personal-data.json"'
    return response


@admin.action(description=_("Erase the selected people's data (profile, ratings, events)"),
              permissions=["delete"])
def erase_people_data(model_admin, request, queryset):
    totals = {"profiles": 0, "ratings": 0, "events": 0}
    owners = _owners(queryset)
    for user, visitor_key in owners:
        for name, count in privacy.erase_user_data(user, visitor_key).items():
            totals[name] += count
    model_admin.message_user(request, f"Erased the data of {len(owners)} people: {totals['profiles']} profiles, "
                                      f"{totals['ratings']} ratings, {totals['events']} events.", messages.SUCCESS)
