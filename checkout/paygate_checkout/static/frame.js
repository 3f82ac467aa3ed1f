/*
 * paygate checkout — the card form inside the iframe.
 *
 * Formats and validates as the customer types, encrypts the card with the gateway's
 * public key (jwe.js), exchanges it for a token at POST tokensUrl, and tells the parent
 * page through postMessage — always to the merchant's registered origin, never a wildcard.
 * Messages: paygate:ready, paygate:resize {height}, paygate:token {token, card},
 * paygate:error {code, message}.
 */
(function (global) {
  "use strict";

  var Card = global.PaygateCard;
  var Jwe = global.PaygateJwe;
  var doc = global.document;

  var config = JSON.parse(doc.getElementById("paygate-config").textContent);
  // The client secret and origin stay in this closure; the JSON block is removed.
  doc.getElementById("paygate-config").remove();

  var form = doc.getElementById("pg-form");
  var submit = doc.getElementById("pg-submit");
  var submitLabel = doc.getElementById("pg-submit-label");
  var formError = doc.getElementById("pg-form-error");
  var brandBadge = doc.getElementById("pg-brand");
  var brandLabel = doc.getElementById("pg-brand-label");
  var cvcHint = doc.getElementById("pg-cvc-hint");

  var fields = {
    number: doc.getElementById("pg-number"),
    expiry: doc.getElementById("pg-expiry"),
    cvc: doc.getElementById("pg-cvc"),
    name: doc.getElementById("pg-name")
  };
  var order = ["number", "expiry", "cvc", "name"];
  // A field shows "incomplete"/"empty" errors only once the customer has left it (or
  // submitted); an error that can no longer be fixed by typing on shows at once.
  var touched = { number: false, expiry: false, cvc: false, name: false };
  var busy = false;

  function post(type, data) {
    var message = { type: type };
    if (data) {
      for (var key in data) {
        if (Object.prototype.hasOwnProperty.call(data, key)) {
          message[key] = data[key];
        }
      }
    }
    if (global.parent && global.parent !== global) {
      global.parent.postMessage(message, config.merchantOrigin);
    }
  }

  // --- state and validation ------------------------------------------------------------

  function numberDigits() {
    return Card.onlyDigits(fields.number.value);
  }

  function currentBrand() {
    return Card.brandOf(numberDigits());
  }

  function check(name) {
    switch (name) {
      case "number":
        return Card.checkNumber(numberDigits());
      case "expiry":
        return Card.checkExpiry(fields.expiry.value, new Date());
      case "cvc":
        return Card.checkCvc(Card.onlyDigits(fields.cvc.value), currentBrand());
      default:
        return Card.checkName(fields.name.value);
    }
  }

  function showError(name, message) {
    var input = fields[name];
    var error = doc.getElementById("pg-" + name + "-error");
    input.setAttribute("aria-invalid", message ? "true" : "false");
    input.classList.toggle("pg-invalid", !!message);
    if (error.textContent !== message) {
      error.textContent = message;
    }
  }

  // Decide what to show for one field. final: on blur/submit, show every problem.
  function refresh(name, final) {
    var state = check(name);
    var show = "";
    if (state.status === "invalid") {
      show = state.message;
    } else if (state.status !== "valid" && (final || touched[name])) {
      show = state.status === "empty" && !final ? "" : state.message;
    }
    showError(name, show);
    return state;
  }

  // The CVC's length limit is enforced here, not by a maxlength attribute: the browser
  // would cut a pasted " 1234" to " 123" before the spaces could be dropped.
  var cvcMax = 4;

  function updateBrand() {
    var brand = currentBrand();
    brandBadge.setAttribute("data-brand", brand);
    brandLabel.textContent = Card.brandLabel(brand);
    cvcMax = Math.max.apply(null, Card.cvcLengths(brand));
    cvcHint.textContent = brand === "amex"
      ? "4 digits on the front of the card"
      : brand === "unknown" ? "3 or 4 digits on the card" : "3 digits on the back of the card";
    fields.cvc.placeholder = brand === "amex" ? "4 digits" : "CVC";
    if (fields.cvc.value.length > cvcMax) {
      fields.cvc.value = fields.cvc.value.slice(0, cvcMax);
    }
  }

  // --- formatting while typing, keeping the caret after the same digit -------------------

  function digitsBefore(value, position) {
    return Card.onlyDigits(value.slice(0, position)).length;
  }

  function positionAfterDigits(value, count) {
    if (count === 0) {
      return 0;
    }
    var seen = 0;
    for (var i = 0; i < value.length; i++) {
      if (/[0-9]/.test(value.charAt(i))) {
        seen += 1;
        if (seen === count) {
          return i + 1;
        }
      }
    }
    return value.length;
  }

  function reformat(input, format, previousDigits, inputType) {
    var value = input.value;
    var caret = input.selectionStart === null ? value.length : input.selectionStart;
    var atEnd = caret === value.length;
    var before = digitsBefore(value, caret);
    var digits = Card.onlyDigits(value);
    // Backspace over a separator would otherwise be undone by re-formatting: delete the
    // digit in front of it instead.
    if (inputType === "deleteContentBackward" && digits === previousDigits && before > 0) {
      digits = digits.slice(0, before - 1) + digits.slice(before);
      before -= 1;
      value = digits;
    } else if (inputType === "deleteContentForward" && digits === previousDigits) {
      digits = digits.slice(0, before) + digits.slice(before + 1);
      value = digits;
    }
    var formatted = format(value, /^delete/.test(inputType || ""));
    input.value = formatted;
    if (doc.activeElement === input) {
      var position = atEnd ? formatted.length : positionAfterDigits(formatted, before);
      input.setSelectionRange(position, position);
    }
  }

  var lastDigits = { number: "", expiry: "" };

  fields.number.addEventListener("input", function (event) {
    reformat(fields.number, function (value) {
      return Card.formatCardNumber(Card.onlyDigits(value));
    }, lastDigits.number, event.inputType);
    lastDigits.number = numberDigits();
    updateBrand();
    refresh("number", false);
    if (Card.onlyDigits(fields.cvc.value)) {
      refresh("cvc", false);
    }
  });

  fields.expiry.addEventListener("input", function (event) {
    reformat(fields.expiry, Card.formatExpiry, lastDigits.expiry, event.inputType);
    lastDigits.expiry = Card.onlyDigits(fields.expiry.value);
    refresh("expiry", false);
  });

  fields.cvc.addEventListener("input", function () {
    var digits = Card.onlyDigits(fields.cvc.value).slice(0, cvcMax);
    if (digits !== fields.cvc.value) {
      fields.cvc.value = digits;
    }
    refresh("cvc", false);
  });

  fields.name.addEventListener("input", function () {
    refresh("name", false);
  });

  order.forEach(function (name) {
    fields[name].addEventListener("blur", function () {
      if (busy) {
        return;
      }
      if (fields[name].value !== "") {
        touched[name] = true;
      }
      refresh(name, false);
    });
  });

  // --- submit ------------------------------------------------------------------------

  function setBusy(value) {
    busy = value;
    submit.disabled = value;
    submit.classList.toggle("pg-busy", value);
    submit.setAttribute("aria-busy", value ? "true" : "false");
    submitLabel.textContent = value ? "Processing\u2026" : config.submitLabel;
    order.forEach(function (name) {
      fields[name].readOnly = value;
    });
  }

  function clearCardFields() {
    order.forEach(function (name) {
      fields[name].value = "";
    });
    lastDigits.number = "";
    lastDigits.expiry = "";
  }

  function fail(code, message) {
    formError.textContent = message;
    post("paygate:error", { code: code, message: message });
  }

  function readJson(response) {
    return response.text().then(function (text) {
      try {
        return text ? JSON.parse(text) : null;
      } catch (ignored) {
        return null;
      }
    });
  }

  // A connection that hangs (no answer, no reset) would keep "Processing…" up for minutes:
  // past this the request is abandoned as a network error the shopper can retry.
  var REQUEST_TIMEOUT_MS = 30000;

  function fetchJson(url, init) {
    init.credentials = "omit";
    init.cache = "no-store";
    init.referrerPolicy = "no-referrer";
    var controller = new global.AbortController();
    init.signal = controller.signal;
    var timer = global.setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    return global.fetch(url, init)
      .then(function (response) {
        return readJson(response).then(function (body) {
          return {
            ok: response.ok, status: response.status, body: body, date: response.headers.get("Date")
          };
        });
      })
      .then(
        function (result) {
          global.clearTimeout(timer);
          return result;
        },
        function () {
          global.clearTimeout(timer);
          return { ok: false, status: 0, body: null };
        }
      );
  }

  function apiError(result) {
    var error = result.body && result.body.error;
    if (error && typeof error.code === "string") {
      return {
        code: error.code,
        message: typeof error.message === "string" && error.message
          ? error.message
          : "Your card could not be saved. Please try again."
      };
    }
    if (result.status === 0) {
      return {
        code: "network_error",
        message: "We could not reach the payment service. Check your connection and try again."
      };
    }
    return { code: "api_error", message: "Your card could not be saved. Please try again." };
  }

  // The gateway checks generationTime against its own clock (at most minutes ahead, a day
  // behind): take it from the keys response's Date header, so a shopper whose device
  // clock is off can still pay. The device clock only if that header is missing.
  function gatewayTime(dateHeader) {
    var time = dateHeader ? Date.parse(dateHeader) : NaN;
    return new Date(isNaN(time) ? Date.now() : time).toISOString();
  }

  function showDone(card) {
    var label = Card.brandLabel(card && card.brand) || "Card";
    var last4 = card && typeof card.last4 === "string" ? card.last4 : "";
    doc.getElementById("pg-done-detail").textContent = last4
      ? label + " ending in " + last4
      : label;
    form.hidden = true;
    doc.getElementById("pg-done").hidden = false;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) {
      return;
    }
    formError.textContent = "";
    var states = {};
    var firstInvalid = null;
    order.forEach(function (name) {
      touched[name] = true;
      states[name] = refresh(name, true);
      if (states[name].status !== "valid" && firstInvalid === null) {
        firstInvalid = name;
      }
    });
    if (firstInvalid !== null) {
      fields[firstInvalid].focus();
      return;
    }
    if (!Jwe.available()) {
      fail("encryption_unavailable", "This browser cannot encrypt card details. Please use an up-to-date browser.");
      return;
    }

    var payload = {
      number: states.number.digits,
      expMonth: states.expiry.month,
      expYear: states.expiry.year,
      cvc: Card.onlyDigits(fields.cvc.value),
      name: fields.name.value.trim(),
      generationTime: null
    };
    setBusy(true);

    fetchJson(config.keysUrl, { method: "GET", headers: { Accept: "application/json" } })
      .then(function (keys) {
        if (!keys.ok) {
          throw apiError(keys);
        }
        payload.generationTime = gatewayTime(keys.date);
        return Jwe.encrypt(keys.body, payload).catch(function () {
          throw {
            code: "encryption_failed",
            message: "Your card details could not be encrypted. Please try again."
          };
        });
      })
      .then(function (encryptedCard) {
        // The plaintext is no longer needed: drop it before anything goes on the wire.
        payload.number = payload.cvc = payload.name = "";
        payload = null;
        return fetchJson(config.tokensUrl, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ clientSecret: config.clientSecret, encryptedCard: encryptedCard })
        });
      })
      .then(function (result) {
        if (!result.ok || !result.body || typeof result.body.token !== "string") {
          throw apiError(result);
        }
        clearCardFields();
        setBusy(false);
        showDone(result.body.card);
        post("paygate:token", { token: result.body.token, card: result.body.card });
      })
      .catch(function (error) {
        if (payload) {
          payload.number = payload.cvc = payload.name = "";
          payload = null;
        }
        setBusy(false);
        if (error && typeof error.code === "string") {
          fail(error.code, error.message);
        } else {
          fail("api_error", "Your card could not be saved. Please try again.");
        }
      });
  });

  // --- size reporting and start -------------------------------------------------------

  var lastHeight = -1;
  function reportHeight() {
    var height = Math.ceil(doc.documentElement.getBoundingClientRect().height);
    if (height !== lastHeight) {
      lastHeight = height;
      post("paygate:resize", { height: height });
    }
  }
  if (typeof global.ResizeObserver === "function") {
    new global.ResizeObserver(reportHeight).observe(doc.documentElement);
  }
  global.addEventListener("load", reportHeight);

  updateBrand();
  submit.disabled = false;
  reportHeight();
  post("paygate:ready");
})(window);
