/*
 * paygate checkout — card encryption in the browser (WebCrypto), no library.
 *
 * JWE compact serialization, alg RSA-OAEP-256, enc A256GCM, with kid (SPEC §5):
 *   BASE64URL(header) . BASE64URL(RSA-OAEP-256(CEK)) . BASE64URL(IV) .
 *   BASE64URL(ciphertext) . BASE64URL(tag)
 * AAD is the ASCII of BASE64URL(header); WebCrypto's AES-GCM output is ciphertext||tag,
 * split here into the two JWE parts. Exposed as window.PaygateJwe.
 */
(function (global) {
  "use strict";

  var ALG = "RSA-OAEP-256";
  var ENC = "A256GCM";
  var TAG_BYTES = 16;

  function base64url(bytes) {
    var binary = "";
    for (var i = 0; i < bytes.length; i++) {
      binary += String.fromCharCode(bytes[i]);
    }
    return global.btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function asciiBytes(text) {
    return new TextEncoder().encode(text);
  }

  // The first key usable for RSA-OAEP-256 encryption: the server lists its current key first.
  function pickKey(jwks) {
    var keys = jwks && Array.isArray(jwks.keys) ? jwks.keys : [];
    for (var i = 0; i < keys.length; i++) {
      var key = keys[i];
      if (
        key && key.kty === "RSA" && typeof key.kid === "string" && key.kid &&
        typeof key.n === "string" && typeof key.e === "string" &&
        (key.alg === undefined || key.alg === ALG) &&
        (key.use === undefined || key.use === "enc")
      ) {
        return key;
      }
    }
    return null;
  }

  function available() {
    return !!(global.isSecureContext && global.crypto && global.crypto.subtle);
  }

  /*
   * Encrypt a JSON-serializable payload to the JWKS's current key. Resolves to the
   * compact JWE string. The CEK and the plaintext bytes are zeroed once used.
   */
  function encrypt(jwks, payload) {
    if (!available()) {
      return Promise.reject(new Error("encryption_unavailable"));
    }
    var jwk = pickKey(jwks);
    if (!jwk) {
      return Promise.reject(new Error("no_usable_key"));
    }
    var subtle = global.crypto.subtle;
    var header = base64url(asciiBytes(JSON.stringify({ alg: ALG, enc: ENC, kid: jwk.kid })));
    var cek = global.crypto.getRandomValues(new Uint8Array(32));
    var iv = global.crypto.getRandomValues(new Uint8Array(12));
    var plaintext = new TextEncoder().encode(JSON.stringify(payload));
    var rsaKeyPromise = subtle.importKey(
      "jwk",
      { kty: "RSA", n: jwk.n, e: jwk.e, alg: ALG, ext: true },
      { name: "RSA-OAEP", hash: "SHA-256" },
      false,
      ["encrypt"]
    );
    var aesKeyPromise = subtle.importKey("raw", cek, { name: "AES-GCM" }, false, ["encrypt"]);
    return Promise.all([rsaKeyPromise, aesKeyPromise])
      .then(function (imported) {
        return Promise.all([
          subtle.encrypt({ name: "RSA-OAEP" }, imported[0], cek),
          subtle.encrypt(
            { name: "AES-GCM", iv: iv, additionalData: asciiBytes(header), tagLength: 128 },
            imported[1],
            plaintext
          )
        ]);
      })
      .then(function (results) {
        var wrapped = new Uint8Array(results[0]);
        var sealed = new Uint8Array(results[1]);
        var ciphertext = sealed.subarray(0, sealed.length - TAG_BYTES);
        var tag = sealed.subarray(sealed.length - TAG_BYTES);
        return [header, base64url(wrapped), base64url(iv), base64url(ciphertext), base64url(tag)]
          .join(".");
      })
      .finally(function () {
        cek.fill(0);
        plaintext.fill(0);
      });
  }

  global.PaygateJwe = Object.freeze({
    ALG: ALG,
    ENC: ENC,
    available: available,
    pickKey: pickKey,
    encrypt: encrypt
  });
})(window);
