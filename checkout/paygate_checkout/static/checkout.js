/*
 * paygate checkout.js — include it from the gateway and mount the card form:
 *
 *   <script src="https://pay.example/checkout/v1/checkout.js"></script>
 *   <div id="card-element"></div>
 *   <script>
 *     var handle = Paygate.mount("#card-element", {
 *       clientSecret: "pi_..._secret_...",
 *       onReady: function () {},
 *       onToken: function (token, card) { ... send token to your server ... },
 *       onError: function (error) { ... error.code, error.message ... }
 *     });
 *     // later: handle.unmount();
 *   </script>
 *
 * The card form lives in an iframe on the gateway's origin: this page never sees card
 * data. Messages are accepted only from that iframe's window AND the gateway's origin
 * (strict equality), so no other frame or window can fake a token.
 */
(function (global) {
  "use strict";

  var doc = global.document;
  var script = doc.currentScript;
  // Where this script was loaded from decides the gateway's origin and path; computed now,
  // since document.currentScript is only set while the script first runs.
  var scriptUrl = script && script.src ? new URL(script.src, doc.baseURI) : null;
  var READY_GRACE_MS = 4000;
  // What the frame sends, checked again here: the callbacks get fresh objects of the
  // documented shapes only (no huge strings, no "__proto__" keys a merchant might merge).
  var TOKEN = /^tok_[A-Za-z0-9_]{1,120}$/;
  var CODE = /^[a-z][a-z0-9_]{0,63}$/;
  var MAX_MESSAGE_CHARS = 500;

  function cardOf(value) {
    if (!value || typeof value !== "object") {
      return null;
    }
    var card = {};
    if (typeof value.brand === "string" && /^[a-z]{1,20}$/.test(value.brand)) {
      card.brand = value.brand;
    }
    if (typeof value.last4 === "string" && /^[0-9]{4}$/.test(value.last4)) {
      card.last4 = value.last4;
    }
    ["expMonth", "expYear"].forEach(function (key) {
      var number = value[key];
      if (typeof number === "number" && number % 1 === 0 && number >= 1 && number <= 9999) {
        card[key] = number;
      }
    });
    return card;
  }

  function callback(fn, args) {
    if (typeof fn !== "function") {
      return;
    }
    try {
      fn.apply(null, args);
    } catch (error) {
      // The merchant's callback failed: report it without breaking the message loop.
      global.setTimeout(function () { throw error; }, 0);
    }
  }

  function resolveContainer(target) {
    if (typeof target === "string") {
      return doc.querySelector(target);
    }
    return target && target.nodeType === 1 ? target : null;
  }

  function frameUrl(options) {
    var base;
    if (options.gatewayOrigin) {
      base = new URL("/checkout/v1/", options.gatewayOrigin);
    } else if (scriptUrl) {
      base = new URL("./", scriptUrl);
    } else {
      throw new Error("Paygate: cannot tell the gateway's address; pass gatewayOrigin");
    }
    var url = new URL("frame", base);
    url.searchParams.set("clientSecret", options.clientSecret);
    url.searchParams.set("parentOrigin", global.location.origin);
    return url;
  }

  function mount(target, options) {
    options = options || {};
    var container = resolveContainer(target);
    if (!container) {
      throw new Error("Paygate.mount: no element matches " + String(target));
    }
    if (typeof options.clientSecret !== "string" || !options.clientSecret) {
      throw new Error("Paygate.mount: clientSecret is required");
    }
    var url = frameUrl(options);
    var gatewayOrigin = url.origin;

    var iframe = doc.createElement("iframe");
    iframe.src = url.href;
    iframe.title = "Secure card payment form";
    iframe.setAttribute("scrolling", "no");
    iframe.setAttribute("referrerpolicy", "no-referrer");
    // The frame needs scripts, its own origin (fetch, WebCrypto) and its form; it may not
    // open popups or navigate this page.
    iframe.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms");
    iframe.style.display = "block";
    iframe.style.width = "100%";
    iframe.style.minWidth = "0";
    iframe.style.border = "0";
    iframe.style.overflow = "hidden";
    iframe.style.height = "360px";
    iframe.style.background = "transparent";

    var ready = false;
    var mounted = true;
    var readyTimer = null;

    function onMessage(event) {
      if (event.source !== iframe.contentWindow || event.origin !== gatewayOrigin) {
        return;
      }
      var data = event.data;
      if (!data || typeof data !== "object" || typeof data.type !== "string") {
        return;
      }
      switch (data.type) {
        case "paygate:ready":
          if (!ready) {
            ready = true;
            callback(options.onReady, []);
          }
          break;
        case "paygate:resize":
          if (typeof data.height === "number" && isFinite(data.height) &&
              data.height >= 0 && data.height <= 10000) {
            iframe.style.height = Math.ceil(data.height) + "px";
          }
          break;
        case "paygate:token":
          if (typeof data.token === "string" && TOKEN.test(data.token)) {
            callback(options.onToken, [data.token, cardOf(data.card)]);
          }
          break;
        case "paygate:error":
          callback(options.onError, [{
            code: typeof data.code === "string" && CODE.test(data.code) ? data.code : "api_error",
            message: typeof data.message === "string" && data.message.length <= MAX_MESSAGE_CHARS
              ? data.message
              : ""
          }]);
          break;
        default:
          break;
      }
    }

    // A frame refused by the gateway (unknown clientSecret, or this origin is not one of
    // the merchant's registered origins) still fires "load" but never says it is ready.
    function onLoad() {
      if (ready || readyTimer !== null) {
        return;
      }
      try {
        // Some browsers fire "load" for the initial about:blank; it is same-origin, the
        // gateway's page (or a browser error page) is not.
        if (iframe.contentWindow.location.href === "about:blank") {
          return;
        }
      } catch (crossOrigin) {
        // Expected: the frame is on the gateway's origin.
      }
      readyTimer = global.setTimeout(function () {
        if (mounted && !ready) {
          callback(options.onError, [{
            code: "frame_unavailable",
            message: "The payment form could not be loaded."
          }]);
        }
      }, READY_GRACE_MS);
    }

    global.addEventListener("message", onMessage);
    iframe.addEventListener("load", onLoad);
    container.appendChild(iframe);

    return {
      iframe: iframe,
      unmount: function () {
        if (!mounted) {
          return;
        }
        mounted = false;
        global.removeEventListener("message", onMessage);
        iframe.removeEventListener("load", onLoad);
        if (readyTimer !== null) {
          global.clearTimeout(readyTimer);
        }
        if (iframe.parentNode) {
          iframe.parentNode.removeChild(iframe);
        }
      }
    };
  }

  global.Paygate = Object.freeze({ version: "1", mount: mount });
})(window);
