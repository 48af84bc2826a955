"""URLs for the beacon's browser test: a page marked up as the beacon's header documents.

Like the demo shop's product page, the page records its own view when rendered; the beacon's
dwell report then joins that view.
"""

from django.contrib.staticfiles import finders
from django.http import HttpResponse
from django.urls import include, path
from django.utils.html import escape

from recommender import attribution, events

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>beacon test</title></head>
<body data-rec-view-item="{viewed}" style="margin:0">
<section data-rec-placement="home" data-rec-token="{token}">{visible}</section>
<div style="height:4000px"></div>
<section data-rec-placement="footer">{hidden}</section>
<script src="/beacon.js" data-rec-endpoint="/api/events/" data-rec-flush-ms="200"></script>
<script>
  // The visitor clicks the second item after half a second, and leaves the page after 1.5 s.
  setTimeout(function () {{ document.querySelectorAll("[data-rec-item]")[1].click(); }}, 500);
  setTimeout(function () {{ window.dispatchEvent(new Event("pagehide")); }}, 1500);
</script>
</body></html>"""


def item(product_id):
    return f'<span data-rec-item="{escape(product_id)}" style="display:block;height:40px">item</span>'


def page(request):
    visible = request.GET["visible"].split(",")
    hidden = request.GET["hidden"].split(",")
    events.record_for_request(request, [{"product": request.GET["viewed"], "event": "view"}], trust=events.SERVER)
    # As serving does: the visible list's signed attribution, issued to this visitor.
    token = attribution.issue(identity=f"visitor:{events.visitor_key_for(request)}", placement="home",
                              strategy="hybrid", arm="b", item_ids=visible)
    html = PAGE.format(
        viewed=escape(request.GET["viewed"]),
        token=escape(token),
        visible="".join(item(product_id) for product_id in visible),
        hidden="".join(item(product_id) for product_id in hidden),
    )
    return HttpResponse(html)


def beacon(request):
    with open(finders.find("recommender/beacon.js"), encoding="utf-8") as source:
        return HttpResponse(source.read(), content_type="text/javascript")


urlpatterns = [
    path("beacon-test/", page),
    path("beacon.js", beacon),
    path("", include("recommender.urls")),
]
