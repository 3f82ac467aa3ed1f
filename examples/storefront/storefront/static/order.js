/*
 * The order page: mounts the gateway's card form, sends its token to this shop's server,
 * and keeps the page in step with the payment — without a reload.
 *
 * Card data never reaches this page: it stays inside the gateway's iframe, which hands
 * back a single-use token (paygate:token). This script only ever sees that token.
 */
(function () {
  "use strict";

  var global = window;
  var doc = document;
  var config = JSON.parse(doc.getElementById("order-config").textContent);
  var root = doc.getElementById("order");
  var el = function (id) { return doc.getElementById(id); };

  var handle = null;      // the mounted card form
  var frameUsed = false;  // its token was spent: a new attempt needs a fresh form
  var polling = false;
  var paying = false;     // a pay request is in flight: its answer decides what comes next

  function setText(id, text) {
    var node = el(id);
    if (node && node.textContent !== text) {
      node.textContent = text;
    }
  }

  function showAlert(message) {
    var alert = el("payment-alert");
    alert.textContent = message || "";
    alert.hidden = !message;
  }

  function unmount() {
    if (handle) {
      handle.unmount();
      handle = null;
    }
  }

  function mount() {
    unmount();
    frameUsed = false;
    if (!global.Paygate) {
      showAlert("The payment form could not be loaded. Please reload the page.");
      return;
    }
    handle = global.Paygate.mount("#card-element", {
      clientSecret: config.clientSecret,
      onToken: onToken,
      onError: function (error) { showAlert(error.message || "Something went wrong. Please try again."); }
    });
  }

  function render(order) {
    root.setAttribute("data-status", order.status);
    var badge = el("order-status");
    badge.className = "badge badge-" + order.status;
    setText("order-status", order.statusLabel);
    setText("order-headline", order.headline);
    setText("order-detail", order.detail);
    setText("done-title", order.doneTitle || order.statusLabel);
    setText("order-card", order.card || "\u2014");
    setText("order-refunded", order.amountRefundedLabel);
    el("refunded-row").hidden = !order.amountRefunded;
    setText("order-held", order.amountHeldLabel || "");
    el("held-row").hidden = !order.amountHeld;
    setText("order-charged", order.amountReceivedLabel || "");
    el("charged-row").hidden = !(order.captureMethod === "manual" && order.amountReceived);

    var processing = order.status === "processing";
    el("progress-panel").hidden = !processing;
    el("payment-panel").hidden = !order.payable;
    el("done-panel").hidden = order.payable || processing;
    if (order.payable && config.clientSecret) {
      if (order.declineMessage) {
        showAlert(order.declineMessage);
      }
      if (!handle || frameUsed) {
        mount();
      }
    } else {
      unmount();
    }
    if (processing && !paying) {
      poll();
    }
  }

  function readJson(response) {
    return response.json().then(
      function (body) { return { ok: response.ok, status: response.status, body: body }; },
      function () { return { ok: false, status: response.status, body: null }; }
    );
  }

  function orderOf(result) {
    if (!result.body) {
      return null;
    }
    return result.ok ? result.body : result.body.order || null;
  }

  function onToken(token) {
    frameUsed = true;
    paying = true;
    showAlert("");
    render({
      status: "processing", statusLabel: "Processing", headline: "Confirming your payment\u2026",
      detail: "This usually takes a few seconds.", payable: false, card: null,
      amountRefunded: 0, amountRefundedLabel: ""
    });
    fetch(config.payUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token: token })
    }).then(readJson).then(function (result) {
      paying = false;
      var order = orderOf(result);
      if (order) {
        render(order);
      }
      if (!result.ok && result.body && result.body.error) {
        showAlert(result.body.error.message);
      }
      if (!order || result.status >= 500) {
        poll();  // no answer about the payment: ask until there is one
      }
    }, function () {
      paying = false;
      poll();
    });
  }

  // Long-poll the shop's server while the payment is processing. Each request is held
  // (up to ~20 s) until the payment changes, so an outcome shows within a moment.
  function poll() {
    if (polling) {
      return;
    }
    polling = true;
    var failures = 0;
    (function next() {
      fetch(config.statusUrl + "?wait=20", { credentials: "same-origin", cache: "no-store" })
        .then(readJson)
        .then(function (result) {
          var order = orderOf(result);
          failures = result.ok ? 0 : failures + 1;
          if (result.ok && order && order.status !== "processing") {
            polling = false;
            render(order);
            return;
          }
          if (order) {
            render(order);
          }
          global.setTimeout(next, result.ok ? 0 : Math.min(1000 * failures, 5000));
        }, function () {
          failures += 1;
          global.setTimeout(next, Math.min(1000 * failures, 5000));
        });
    })();
  }

  render(config.order);
})();
