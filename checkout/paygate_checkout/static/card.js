/*
 * paygate checkout — card number, expiry and CVC rules (no DOM, no network).
 *
 * Mirrors server/paygate_server/cards/pan.py (brand ranges, Luhn); a browser test checks
 * that both agree. Exposed as window.PaygateCard for frame.js.
 */
(function (global) {
  "use strict";

  // [brand, low, high] over the first String(low).length digits, checked in order:
  // Discover's 622126-622925 sits inside UnionPay's 62 and must come first.
  var BIN_RANGES = [
    ["amex", 34, 34],
    ["amex", 37, 37],
    ["diners", 300, 305],
    ["diners", 3095, 3095],
    ["diners", 36, 36],
    ["diners", 38, 39],
    ["jcb", 3528, 3589],
    ["visa", 4, 4],
    ["mastercard", 51, 55],
    ["mastercard", 2221, 2720],
    ["discover", 6011, 6011],
    ["discover", 622126, 622925],
    ["discover", 644, 649],
    ["discover", 65, 65],
    ["unionpay", 62, 62],
    ["unionpay", 81, 81]
  ];

  var BRANDS = {
    visa: { label: "Visa", lengths: [13, 16, 19], cvc: [3] },
    mastercard: { label: "Mastercard", lengths: [16], cvc: [3] },
    amex: { label: "American Express", lengths: [15], cvc: [4] },
    discover: { label: "Discover", lengths: [16, 17, 18, 19], cvc: [3] },
    jcb: { label: "JCB", lengths: [16, 17, 18, 19], cvc: [3] },
    diners: { label: "Diners Club", lengths: [14, 15, 16, 17, 18, 19], cvc: [3] },
    unionpay: { label: "UnionPay", lengths: [16, 17, 18, 19], cvc: [3] },
    unknown: { label: "", lengths: [12, 13, 14, 15, 16, 17, 18, 19], cvc: [3, 4] }
  };

  function onlyDigits(value) {
    return String(value).replace(/[^0-9]/g, "");
  }

  function luhnValid(digits) {
    if (!/^[0-9]{2,}$/.test(digits)) {
      return false;
    }
    var total = 0;
    for (var i = 0; i < digits.length; i++) {
      var value = digits.charCodeAt(digits.length - 1 - i) - 48;
      if (i % 2 === 1) {
        value *= 2;
        if (value > 9) {
          value -= 9;
        }
      }
      total += value;
    }
    return total % 10 === 0;
  }

  function brandOf(digits) {
    if (!/^[0-9]+$/.test(digits)) {
      return "unknown";
    }
    for (var i = 0; i < BIN_RANGES.length; i++) {
      var range = BIN_RANGES[i];
      var width = String(range[1]).length;
      if (digits.length >= width) {
        var prefix = parseInt(digits.slice(0, width), 10);
        if (prefix >= range[1] && prefix <= range[2]) {
          return range[0];
        }
      }
    }
    return "unknown";
  }

  function brandInfo(brand) {
    return BRANDS[brand] || BRANDS.unknown;
  }

  function maxNumberLength(brand) {
    var lengths = brandInfo(brand).lengths;
    return lengths[lengths.length - 1];
  }

  // Where the spaces go: Amex 4-6-5, 14-digit Diners 4-6-4, everything else groups of 4.
  function gapsFor(brand, length) {
    if (brand === "amex" || (brand === "diners" && length <= 14)) {
      return [4, 10];
    }
    return [4, 8, 12, 16];
  }

  function formatCardNumber(digits) {
    var brand = brandOf(digits);
    var clipped = digits.slice(0, maxNumberLength(brand));
    var gaps = gapsFor(brand, clipped.length);
    var out = "";
    for (var i = 0; i < clipped.length; i++) {
      if (gaps.indexOf(i) !== -1) {
        out += " ";
      }
      out += clipped.charAt(i);
    }
    return out;
  }

  /*
   * State of a card number: {brand, digits, status, message}. status is "empty",
   * "incomplete" (could still become valid), "invalid" (cannot), or "valid".
   */
  function checkNumber(digits) {
    var brand = brandOf(digits);
    var info = brandInfo(brand);
    var state = { brand: brand, digits: digits, status: "valid", message: "" };
    if (digits.length === 0) {
      state.status = "empty";
      state.message = "Enter your card number.";
    } else if (info.lengths.indexOf(digits.length) !== -1 && luhnValid(digits)) {
      state.status = "valid";
    } else if (digits.length < maxNumberLength(brand) && digits.length < 16) {
      // Below 16 digits more may follow. From 16 on (the usual length) a failed check is
      // shown as the customer types; typing on to a valid 17-19 digit number clears it.
      state.status = "incomplete";
      state.message = info.lengths[0] > digits.length
        ? "Your card number is incomplete."
        : "Your card number is invalid.";
    } else {
      state.status = "invalid";
      state.message = "Your card number is invalid.";
    }
    return state;
  }

  /*
   * Expiry as typed ("MM / YY"): {month, year, status, message}; year is four digits.
   * today: a Date (the customer's clock decides whether the card has expired).
   */
  function checkExpiry(value, today) {
    var digits = onlyDigits(value);
    var state = { month: null, year: null, status: "valid", message: "" };
    if (digits.length === 0) {
      state.status = "empty";
      state.message = "Enter your card's expiry date.";
      return state;
    }
    if (digits.length >= 2) {
      var month = parseInt(digits.slice(0, 2), 10);
      if (month < 1 || month > 12) {
        state.status = "invalid";
        state.message = "Your card's expiry month is invalid.";
        return state;
      }
      state.month = month;
    }
    if (digits.length < 4) {
      state.status = "incomplete";
      state.message = "Your card's expiry date is incomplete.";
      return state;
    }
    var year = 2000 + parseInt(digits.slice(2, 4), 10);
    state.year = year;
    var thisYear = today.getFullYear();
    var thisMonth = today.getMonth() + 1;
    if (year < thisYear || (year === thisYear && state.month < thisMonth)) {
      state.status = "invalid";
      state.message = "Your card has expired.";
    } else if (year > thisYear + 20) {
      state.status = "invalid";
      state.message = "Your card's expiry year is invalid.";
    }
    return state;
  }

  /*
   * Re-format what the customer typed into "MM / YY". deleting: the last edit removed
   * characters (then no separator is added after a two-digit month, so backspace works).
   */
  function formatExpiry(value, deleting) {
    var raw = String(value);
    var digits = onlyDigits(raw);
    if (digits.length === 0) {
      return "";
    }
    // "1/", "1/34", "1-2034" mean January: pad it (typed or pasted).
    if (/^\s*[0-9]\s*[\/.-]/.test(raw)) {
      digits = "0" + digits;
    }
    // Autofill or a paste may give MMYYYY ("12/2034", "12 / 2034"): the field has no
    // maxlength, so this sees all of it and clips to MM / YY itself.
    if (digits.length === 6 && /^(0[1-9]|1[0-2])20[0-9]{2}$/.test(digits)) {
      digits = digits.slice(0, 2) + digits.slice(4);
    }
    // No month starts with 2-9: "4" is April.
    if (digits.charAt(0) > "1") {
      digits = "0" + digits;
    }
    digits = digits.slice(0, 4);
    if (digits.length > 2) {
      return digits.slice(0, 2) + " / " + digits.slice(2);
    }
    if (digits.length === 2 && !deleting) {
      return digits + " / ";
    }
    return digits;
  }

  function cvcLengths(brand) {
    return brandInfo(brand).cvc;
  }

  function checkCvc(digits, brand) {
    var lengths = cvcLengths(brand);
    var state = { status: "valid", message: "" };
    if (digits.length === 0) {
      state.status = "empty";
      state.message = "Enter your card's security code.";
    } else if (lengths.indexOf(digits.length) === -1) {
      if (digits.length < lengths[lengths.length - 1]) {
        state.status = "incomplete";
        state.message = "Your card's security code is incomplete.";
      } else {
        state.status = "invalid";
        state.message = "Your card's security code is invalid.";
      }
    }
    return state;
  }

  function checkName(value) {
    var name = String(value).trim();
    if (name.length === 0) {
      return { status: "empty", message: "Enter the name on your card." };
    }
    return { status: "valid", message: "" };
  }

  global.PaygateCard = Object.freeze({
    BRAND_NAMES: Object.freeze(Object.keys(BRANDS)),
    onlyDigits: onlyDigits,
    luhnValid: luhnValid,
    brandOf: brandOf,
    brandLabel: function (brand) { return brandInfo(brand).label; },
    maxNumberLength: maxNumberLength,
    formatCardNumber: formatCardNumber,
    checkNumber: checkNumber,
    formatExpiry: formatExpiry,
    checkExpiry: checkExpiry,
    cvcLengths: cvcLengths,
    checkCvc: checkCvc,
    checkName: checkName
  });
})(window);
