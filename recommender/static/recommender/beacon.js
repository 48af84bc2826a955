/*
 * Recommender beacon: sends impressions, clicks and dwell time to the events API.
 * No dependencies, no external requests: only POSTs to the endpoint of the page's own site.
 *
 * Markup
 * ------
 *   <script src="{% static 'recommender/beacon.js' %}" defer
 *           data-rec-endpoint="{% url 'recommender:api:events' %}"></script>
 *       data-rec-endpoint   URL of POST /api/events/ (default "/api/events/")
 *       data-rec-flush-ms   how long events wait to be sent together (default 2000)
 *
 *   <section data-rec-placement="home" data-rec-token="{{ recs.token }}">
 *     <a href="/products/42/" data-rec-item="42">...</a>
 *     <a href="/products/7/" data-rec-item="7">...</a>
 *   </section>
 *       Each [data-rec-item] (the product id) sends one "impression" when at least half of it
 *       has been on screen, and a "click" when clicked. The nearest [data-rec-placement]
 *       container's data-rec-token (the served list's signed token) goes with them: the server
 *       reads placement, strategy and A/B arm from it, never from the page, so they cannot be
 *       made up. The item's position in the container (1-based) goes into the event's context.
 *       Items added to the page later (widgets loaded by script) are picked up too.
 *
 *   <body data-rec-view-item="42">          (or any element on a product page)
 *       Sends the page's dwell time: a "view" of that product with dwell_seconds (the time the
 *       page was visible, until it is first hidden or left: visibilitychange / pagehide) and
 *       dwell_only: true. The server adds that time to the view it recorded when it rendered
 *       the page (which counts visitors without JavaScript too), so a page is one view; only
 *       when there is no such view does the report become a view of its own.
 *
 * Sending: events are batched (at most 50 per request) and POSTed as
 * {"batch_id": ..., "events": [...]} with fetch(..., {keepalive: true}) so a batch survives the
 * page being closed, and the X-CSRFToken header from the csrftoken cookie (the API requires it
 * of signed-in users). A batch that fails on the network or with a 5xx is retried once with the
 * same batch_id, which the server stores only once. A 4xx batch is dropped (logged).
 *
 * Script API: window.recommenderBeacon.track({product, event, value, ...}) and .flush().
 */
(function () {
  "use strict";
  if (window.recommenderBeacon) return;

  var script = document.currentScript;
  var endpoint = (script && script.getAttribute("data-rec-endpoint")) || "/api/events/";
  var flushDelay = Number((script && script.getAttribute("data-rec-flush-ms")) || 2000);
  // keepalive requests may carry 64 KB at most; 50 small events stay well under it.
  var MAX_BATCH = 50;
  var queue = [];
  var timer = null;

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function batchId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  function send(body, retried) {
    var headers = { "Content-Type": "application/json" };
    var token = cookie("csrftoken");
    if (token) headers["X-CSRFToken"] = token;
    return fetch(endpoint, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(body),
      credentials: "same-origin",
      keepalive: true,
    }).then(function (response) {
      if (response.status >= 500 && !retried) return retry(body);
      if (!response.ok && window.console) console.warn("recommender beacon: batch refused", response.status);
    }, function () {
      if (!retried) return retry(body);
    });
  }

  function retry(body) {
    return new Promise(function (resolve) {
      setTimeout(function () { resolve(send(body, true)); }, 3000);
    });
  }

  function flush() {
    if (timer) { clearTimeout(timer); timer = null; }
    while (queue.length) {
      send({ batch_id: batchId(), events: queue.splice(0, MAX_BATCH) }, false);
    }
  }

  function track(event) {
    queue.push(event);
    if (queue.length >= MAX_BATCH) flush();
    else if (!timer) timer = setTimeout(flush, flushDelay);
  }

  // --- impressions and clicks on recommended items --------------------------------------------
  function describe(item, eventType) {
    var event = { product: item.getAttribute("data-rec-item"), event: eventType };
    var container = item.closest("[data-rec-placement]");
    if (container) {
      var token = container.getAttribute("data-rec-token");
      if (token) event.token = token;
      var items = container.querySelectorAll("[data-rec-item]");
      event.context = { position: Array.prototype.indexOf.call(items, item) + 1 };
    }
    return event;
  }

  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      observer.unobserve(entry.target);
      track(describe(entry.target, "impression"));
    });
  }, { threshold: 0.5 }) : null;
  var watched = new WeakSet();

  function watch(root) {
    if (!observer || !root.querySelectorAll) return;
    var items = root.matches && root.matches("[data-rec-item]") ? [root] : [];
    items = items.concat(Array.prototype.slice.call(root.querySelectorAll("[data-rec-item]")));
    items.forEach(function (item) {
      if (watched.has(item)) return;
      watched.add(item);
      observer.observe(item);
    });
  }

  document.addEventListener("click", function (click) {
    var item = click.target.closest && click.target.closest("[data-rec-item]");
    if (!item) return;
    track(describe(item, "click"));
    flush(); // the click usually navigates away: send now, keepalive carries it through
  }, true);

  // --- dwell time on a product page ----------------------------------------------------------
  var viewed = null;
  var visibleSince = null;
  var dwellMs = 0;
  var viewSent = false;

  function sendView() {
    if (!viewed || viewSent) return;
    if (visibleSince !== null) dwellMs += Date.now() - visibleSince;
    visibleSince = null;
    viewSent = true;
    // Capped at the server's default MAX_DWELL_SECONDS (6 h): a tab left open overnight is not
    // interest, and an out-of-range value would get the whole batch refused.
    var dwellSeconds = Math.min(Math.round(dwellMs / 100) / 10, 6 * 60 * 60);
    track({ product: viewed, event: "view", dwell_seconds: dwellSeconds, dwell_only: true });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      sendView();
      flush();
    } else if (viewed && !viewSent) {
      visibleSince = Date.now();
    }
  });
  window.addEventListener("pagehide", function () {
    sendView();
    flush();
  });

  function start() {
    watch(document);
    if ("MutationObserver" in window) {
      new MutationObserver(function (mutations) {
        mutations.forEach(function (mutation) {
          Array.prototype.forEach.call(mutation.addedNodes, function (node) {
            if (node.nodeType === 1) watch(node);
          });
        });
      }).observe(document.body, { childList: true, subtree: true });
    }
    var page = document.querySelector("[data-rec-view-item]");
    if (page) {
      viewed = page.getAttribute("data-rec-view-item");
      visibleSince = document.visibilityState === "visible" ? Date.now() : null;
    }
  }

  window.recommenderBeacon = { track: track, flush: flush };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
