/* The overview's charts (uPlot): fetch /overview.json, draw, refresh every ~10 s.
   The page already states the hour's totals; this file only adds the minutes' charts and
   keeps the totals current. window.paygateOverview exposes the last data and the charts
   (the browser tests read what was drawn from there). */
(function () {
  "use strict";
  var root = document.querySelector(".charts[data-source]");
  if (!root || typeof uPlot === "undefined") { return; }
  var source = root.getAttribute("data-source");
  var colors = { succeeded: "#1a7f37", requires_capture: "#4c9a2a", captured: "#0a58ca", canceled: "#8250df",
                 failed: "#b42318", unknown: "#bf8700", approved: "#1a7f37", declined: "#b42318",
                 p50_ms: "#0a58ca", p99_ms: "#b42318", reconcile: "#bf8700", webhooks: "#8250df",
                 success_rate: "#1a7f37" };
  var labels = { succeeded: "succeeded", requires_capture: "authorized", captured: "captured", canceled: "canceled",
                 failed: "failed", unknown: "unknown", p50_ms: "p50", p99_ms: "p99", reconcile: "reconciler",
                 webhooks: "webhooks", success_rate: "success %" };
  var state = { data: null, charts: {}, routes: [], fetches: 0, error: null };
  window.paygateOverview = state;

  function width(el) { return Math.max(240, Math.floor(el.getBoundingClientRect().width)); }

  // Sampled series (a rate, a latency, a backlog) may have a lone minute between empty
  // ones: its point is drawn as a dot, or a line through nothing would hide it.
  var dotted = { success_rate: true, p50_ms: true, p99_ms: true, reconcile: true, webhooks: true };

  function spec(names) {
    var series = [{}];
    names.forEach(function (name) {
      series.push({ label: labels[name] || name, stroke: colors[name] || "#57606a", width: 2, spanGaps: false,
                    points: dotted[name] ? { show: true, size: 5, fill: colors[name] } : {} });
    });
    return series;
  }

  function make(el, names, columns) {
    var y = names[0] === "success_rate" ? { range: [0, 100] } : {};  // a rate is read against 0–100 %
    var opts = { width: width(el), height: 200, series: spec(names), legend: { live: false },
                 scales: { x: { time: true }, y: y }, axes: [{}, { size: 50 }] };
    return new uPlot(opts, columns, el);
  }

  function columnsOf(data, group, names) {
    return [data.minutes].concat(names.map(function (name) { return group[name]; }));
  }

  var plain = {
    outcomes: function (d) {
      var names = Object.keys(d.outcomes);
      return { names: names, columns: columnsOf(d, d.outcomes, names) };
    },
    success_rate: function (d) { return { names: ["success_rate"], columns: [d.minutes, d.success_rate] }; },
    latency: function (d) { return { names: ["p50_ms", "p99_ms"], columns: columnsOf(d, d.latency, ["p50_ms", "p99_ms"]) }; },
    backlogs: function (d) { return { names: ["reconcile", "webhooks"], columns: columnsOf(d, d.backlogs, ["reconcile", "webhooks"]) }; }
  };

  function drawRoutes(d) {
    var box = root.querySelector('[data-chart="routes"]');
    var names = Object.keys(d.routes).sort();
    if (names.join(" ") !== state.routes.join(" ")) {  // routes came or went: build them again
      state.routes.forEach(function (route) { state.charts["route:" + route].destroy(); delete state.charts["route:" + route]; });
      box.textContent = "";
      names.forEach(function (route) {
        var figure = document.createElement("figure");
        var caption = document.createElement("figcaption");
        caption.textContent = route;
        var plot = document.createElement("div");
        plot.className = "plot";
        figure.appendChild(caption);
        figure.appendChild(plot);
        box.appendChild(figure);
        state.charts["route:" + route] = make(plot, ["approved", "declined", "unknown"],
                                              columnsOf(d, d.routes[route], ["approved", "declined", "unknown"]));
      });
      state.routes = names;
      var empty = root.querySelector("[data-routes-empty]");
      if (empty) { empty.hidden = names.length > 0; }
      return;
    }
    names.forEach(function (route) {
      state.charts["route:" + route].setData(columnsOf(d, d.routes[route], ["approved", "declined", "unknown"]));
    });
  }

  function showTotals(t) {
    function set(name, text) {
      var el = document.querySelector('[data-total="' + name + '"]');
      if (el) { el.textContent = text; }
    }
    ["payments", "approved", "failed", "unknown"].forEach(function (name) { set(name, String(t[name])); });
    set("success_rate", t.success_rate === null ? "–" : (t.success_rate * 100).toFixed(1) + " %");
    set("latency", t.p50_ms === null ? "–" : t.p50_ms.toFixed(0) + " / " + t.p99_ms.toFixed(0) + " ms");
    set("reconcile_backlog", t.reconcile_backlog === null ? "–" : String(t.reconcile_backlog));
    // On the link inside its <dd>: textContent on the <dd> would drop the link.
    set("late_outcomes_open", String(t.late_outcomes_open));
    set("webhook_backlog", t.webhook_backlog === null ? "–" : String(t.webhook_backlog));
    var empty = document.getElementById("no-payments");
    if (empty) { empty.hidden = t.payments > 0; }
  }

  function draw(d) {
    state.data = d;
    Object.keys(plain).forEach(function (key) {
      var made = plain[key](d);
      if (state.charts[key]) { state.charts[key].setData(made.columns); return; }
      state.charts[key] = make(root.querySelector('[data-chart="' + key + '"]'), made.names, made.columns);
    });
    drawRoutes(d);
    showTotals(d.totals);
  }

  function refresh() {
    fetch(source, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/login"); throw new Error("signed out"); }
        if (!response.ok) { throw new Error("the overview answered " + response.status); }
        return response.json();
      })
      .then(function (d) { state.fetches += 1; state.error = null; draw(d); root.setAttribute("data-drawn", String(state.fetches)); })
      .catch(function (err) { state.error = String(err); });
  }

  window.addEventListener("resize", function () {
    Object.keys(state.charts).forEach(function (key) {
      var chart = state.charts[key];
      chart.setSize({ width: width(chart.root.parentNode), height: 200 });
    });
  });
  refresh();
  window.setInterval(refresh, 10000);
}());
