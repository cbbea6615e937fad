// The demo page is a public OpenID Connect client in the browser: the
// authorization code flow with PKCE (RFC 7636), the code exchanged and the
// tokens refreshed with fetch, the ID token's and access token's claims
// shown decoded (not verified: the page only shows what Keygate issued;
// a real client verifies the signature against the JWKS), and
// RP-initiated logout. The tokens live in sessionStorage, for this tab.
"use strict";
(function () {
  const cfg = document.getElementById("demo").dataset;
  const $ = (id) => document.getElementById(id);
  const store = window.sessionStorage;

  // The redirect URI is registered exactly: a page opened on another
  // origin (127.0.0.1 for localhost) moves there first.
  const home = new URL(cfg.redirect);
  if (location.origin !== home.origin) {
    location.replace(home.href + location.search);
    return;
  }

  function b64url(bytes) {
    let s = "";
    bytes.forEach((b) => (s += String.fromCharCode(b)));
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function random() {
    return b64url(crypto.getRandomValues(new Uint8Array(32)));
  }
  async function challenge(verifier) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    return b64url(new Uint8Array(digest));
  }
  function claims(jwt) {
    const parts = (jwt || "").split(".");
    if (parts.length !== 3) return "(not a JWT: an opaque token)";
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.stringify(JSON.parse(decodeURIComponent(escape(json))), null, 2);
  }
  function status(text, error) {
    $("status").textContent = text;
    $("status").className = error ? "error" : "";
  }
  function form(params) {
    return { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(params) };
  }

  async function signIn() {
    const verifier = random(), state = random(), nonce = random();
    store.setItem("demo.pkce", JSON.stringify({ verifier, state, nonce }));
    const u = new URL(cfg.authorize);
    u.search = new URLSearchParams({
      response_type: "code", client_id: cfg.client, redirect_uri: cfg.redirect, scope: cfg.scope,
      state, nonce, code_challenge: await challenge(verifier), code_challenge_method: "S256",
    }).toString();
    location.assign(u.href);
  }

  async function tokenRequest(params, what) {
    const resp = await fetch(cfg.token, form(Object.assign({ client_id: cfg.client }, params)));
    const body = await resp.json();
    if (!resp.ok) throw new Error(what + " refused: " + (body.error || resp.status) + (body.error_description ? " (" + body.error_description + ")" : ""));
    return body;
  }

  async function show(tokens) {
    store.setItem("demo.tokens", JSON.stringify(tokens));
    $("id-token").textContent = claims(tokens.id_token);
    $("access-token").textContent = claims(tokens.access_token);
    const shown = Object.assign({}, tokens);
    for (const k of ["access_token", "refresh_token", "id_token"]) if (shown[k]) shown[k] = shown[k].slice(0, 12) + "…";
    $("token-response").textContent = JSON.stringify(shown, null, 2);
    const ui = await fetch(cfg.userinfo, { headers: { Authorization: "Bearer " + tokens.access_token } });
    $("userinfo").textContent = ui.ok ? JSON.stringify(await ui.json(), null, 2) : "userinfo refused: " + ui.status + " " + (ui.headers.get("WWW-Authenticate") || "");
    $("result").hidden = false;
    $("signin").hidden = true;
    $("refresh").hidden = !tokens.refresh_token;
    $("signout").hidden = false;
    status("Signed in.", false);
  }

  async function callback(params) {
    const pending = JSON.parse(store.getItem("demo.pkce") || "null");
    store.removeItem("demo.pkce");
    history.replaceState(null, "", location.pathname);
    if (params.get("error")) throw new Error("the sign-in ended with " + params.get("error") + (params.get("error_description") ? ": " + params.get("error_description") : ""));
    if (!pending || params.get("state") !== pending.state) throw new Error("the state does not match this tab's sign-in; start again");
    const tokens = await tokenRequest({ grant_type: "authorization_code", code: params.get("code"), redirect_uri: cfg.redirect, code_verifier: pending.verifier }, "the code exchange");
    const id = JSON.parse(claims(tokens.id_token));
    if (id.nonce !== pending.nonce) throw new Error("the ID token's nonce is not this sign-in's");
    await show(tokens);
  }

  async function refresh() {
    const tokens = JSON.parse(store.getItem("demo.tokens") || "{}");
    const next = await tokenRequest({ grant_type: "refresh_token", refresh_token: tokens.refresh_token }, "the refresh");
    if (!next.id_token) next.id_token = tokens.id_token;
    await show(next);
    status("Refreshed: a new access token, and the refresh token rotated.", false);
  }

  function signOut() {
    const tokens = JSON.parse(store.getItem("demo.tokens") || "{}");
    store.removeItem("demo.tokens");
    const u = new URL(cfg.logout);
    u.search = new URLSearchParams({ id_token_hint: tokens.id_token || "", post_logout_redirect_uri: cfg.redirect, client_id: cfg.client }).toString();
    location.assign(u.href);
  }

  const fail = (e) => status(e.message, true);
  $("signin").addEventListener("click", () => signIn().catch(fail));
  $("refresh").addEventListener("click", () => refresh().catch(fail));
  $("signout").addEventListener("click", signOut);

  const params = new URLSearchParams(location.search);
  if (params.has("code") || params.has("error")) {
    callback(params).catch(fail);
  } else if (store.getItem("demo.tokens")) {
    show(JSON.parse(store.getItem("demo.tokens"))).catch(fail);
  }
})();
