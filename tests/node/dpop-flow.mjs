// An outside client's DPoP-bound OpenID Connect flow against Keygate, with
// panva's oauth4webapi: a strict, independent implementation of the RFCs,
// so the test proves interoperability rather than Keygate agreeing with its
// own tests. Run by tests/outside_client_test.go; usable by hand too:
//
//   DPOP_FLOW_USERNAME=alice DPOP_FLOW_PASSWORD=… [DPOP_FLOW_CLIENT_SECRET=…] \
//     node tests/node/dpop-flow.mjs --issuer http://127.0.0.1:8080/oauth/v2 \
//       --client-id app --redirect-uri http://127.0.0.1:9/callback
//
// Steps: discovery; a fresh ES256 DPoP key; PAR with a proof (PKCE S256,
// state, nonce, scope openid); the browser's part without a browser (GET
// authorize -> login page, POST the login form with its CSRF token, GET
// authorize again -> the redirect with the code); validateAuthResponse
// (state and RFC 9207 iss); the code exchange with a proof; userinfo with a
// proof (and the same token as Bearer, which must be refused); a refresh
// with a proof. use_dpop_nonce answers are retried once, as oauth4webapi
// documents (isDPoPNonceError), and counted.
//
// Secrets come from the environment, not argv, so they are not visible in
// the process list. On success it prints one JSON line of what it verified
// (thumbprints, subjects, counts; never a token, code or secret) and exits
// 0; on any failure it prints "dpop-flow: FAILED at <step>: …" on stderr
// and exits 1.

import * as oauth from 'oauth4webapi'
import { parseArgs } from 'node:util'

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'redirect-uri': { type: 'string' },
    scope: { type: 'string', default: 'openid profile email' },
    timeout: { type: 'string', default: '10000' }, // per HTTP request, ms
  },
  strict: true,
})

let step = 'arguments'
function fail(msg) {
  throw new Error(msg)
}

// Names of the DPoP nonce retries per endpoint, reported so the Go test can
// tell whether the server-nonce path was exercised.
const nonceRetries = {}

// withNonceRetry runs request() and process(response); a use_dpop_nonce
// refusal is retried once (the DPoP handle has taken the DPoP-Nonce header
// of the refusal by then), as oauth4webapi's examples do.
async function withNonceRetry(name, request, process) {
  try {
    return await process(await request())
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err
    nonceRetries[name] = (nonceRetries[name] ?? 0) + 1
    return await process(await request())
  }
}

// oauth4webapi lowercases token_type; the JSON line reports it as the
// server sent it (RFC 9449 §5 spells it "DPoP").
const wireTokenType = {}
async function rawTokenType(response) {
  try {
    return (await response.clone().json()).token_type ?? null
  } catch {
    return null // not JSON: oauth4webapi's processing says why
  }
}

function jwtPayload(jwt) {
  const parts = jwt.split('.')
  if (parts.length !== 3) fail('not a compact JWS')
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'))
}

// A cookie jar for the login's plain-HTTP loopback: Keygate sets its
// cookies Secure (and __Host-), which a real browser would not send back
// over http, so they are kept by name and sent by hand, as
// tools/keygate-bench/codeflow.go does.
class Jar {
  #c = new Map()
  take(response) {
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(';', 1)[0]
      const eq = pair.indexOf('=')
      if (eq <= 0) continue
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      if (value === '' || /;\s*max-age=(0|-\d+)/i.test(line)) this.#c.delete(name)
      else this.#c.set(name, value)
    }
  }
  header() {
    return [...this.#c].map(([k, v]) => `${k}=${v}`).join('; ')
  }
}

async function main() {
  const timeout = Number(args.timeout)
  if (!(timeout > 0)) fail('--timeout must be a positive number of milliseconds')
  const issuerArg = args.issuer ?? process.env.DPOP_FLOW_ISSUER
  const clientId = args['client-id'] ?? process.env.DPOP_FLOW_CLIENT_ID
  const redirectUri = args['redirect-uri'] ?? process.env.DPOP_FLOW_REDIRECT_URI
  const clientSecret = process.env.DPOP_FLOW_CLIENT_SECRET || ''
  const username = process.env.DPOP_FLOW_USERNAME
  const password = process.env.DPOP_FLOW_PASSWORD
  if (!issuerArg || !clientId || !redirectUri || !username || !password) {
    fail('need --issuer, --client-id, --redirect-uri and DPOP_FLOW_USERNAME, DPOP_FLOW_PASSWORD (DPOP_FLOW_CLIENT_SECRET for a confidential client)')
  }
  const issuer = new URL(issuerArg)
  // Plain http only for the test's own loopback issuer: oauth4webapi
  // refuses http otherwise, and a real deployment must stay on https.
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(issuer.hostname)
  if (issuer.protocol !== 'https:' && !loopback) fail(`refusing a non-https issuer that is not loopback: ${issuer}`)
  const insecure = issuer.protocol === 'http:'
  const http = () => ({ [oauth.allowInsecureRequests]: insecure, signal: AbortSignal.timeout(timeout) })

  step = 'discovery'
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { ...http(), algorithm: 'oidc' }))
  for (const k of ['pushed_authorization_request_endpoint', 'authorization_endpoint', 'token_endpoint', 'userinfo_endpoint']) {
    if (!as[k]) fail(`discovery has no ${k}`)
  }
  if (as.authorization_response_iss_parameter_supported !== true) fail('discovery: authorization_response_iss_parameter_supported is not true')
  if (!as.dpop_signing_alg_values_supported?.includes('ES256')) fail('discovery: ES256 not in dpop_signing_alg_values_supported')

  const client = { client_id: clientId }
  const clientAuth = clientSecret ? oauth.ClientSecretBasic(clientSecret) : oauth.None()

  step = 'dpop key'
  const keyPair = await oauth.generateKeyPair('ES256')
  const DPoP = oauth.DPoP(client, keyPair)
  const jkt = await DPoP.calculateThumbprint()

  step = 'par'
  const codeVerifier = oauth.generateRandomCodeVerifier()
  const state = oauth.generateRandomState()
  const nonce = oauth.generateRandomNonce()
  const params = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: args.scope,
    state,
    nonce,
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
  })
  const par = await withNonceRetry(
    'par',
    () => oauth.pushedAuthorizationRequest(as, client, clientAuth, params, { ...http(), DPoP }),
    (r) => oauth.processPushedAuthorizationResponse(as, client, r),
  )
  if (!par.request_uri.startsWith('urn:ietf:params:oauth:request_uri:')) fail('request_uri is not a urn:ietf:params:oauth:request_uri')

  // The browser's part, by hand: no redirect is followed automatically,
  // each one is checked to go where it should.
  const jar = new Jar()
  const get = async (name, url, init = {}) => {
    step = name
    const headers = new Headers(init.headers)
    const cookie = jar.header()
    if (cookie) headers.set('cookie', cookie)
    const r = await fetch(url, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(timeout) })
    jar.take(r)
    const text = (await r.text()).slice(0, 1 << 20)
    return { r, text, location: r.headers.get('location') }
  }
  const authorizeURL = new URL(as.authorization_endpoint)
  authorizeURL.searchParams.set('client_id', clientId)
  authorizeURL.searchParams.set('request_uri', par.request_uri)

  let res = await get('authorize (no session)', authorizeURL)
  if (res.r.status !== 302 || !res.location) fail(`status ${res.r.status}, want 302 to the login page: ${res.text.slice(0, 200)}`)
  const loginURL = new URL(res.location, authorizeURL)
  if (!loginURL.pathname.endsWith('/login') || !loginURL.searchParams.get('return_to')) fail(`redirected to ${loginURL.pathname}, want the login page with return_to`)
  const returnTo = loginURL.searchParams.get('return_to')

  res = await get('GET login page', loginURL)
  if (res.r.status !== 200) fail(`status ${res.r.status}`)
  const m = res.text.match(/name="csrf" value="([^"]+)"/)
  if (!m) fail('no csrf field in the login page')
  // html/template's attribute escaping undone (&amp; last, so nothing is
  // unescaped twice); Keygate's tokens are base64url, so this is a guard.
  const csrf = m[1].replaceAll('&#43;', '+').replaceAll('&#34;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&')

  res = await get('POST login', new URL(loginURL.pathname, loginURL), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username, password, csrf, return_to: returnTo }),
  })
  if (res.r.status !== 303 || !res.location) fail(`status ${res.r.status}, want 303 back to authorize (wrong password or CSRF?): ${res.text.slice(0, 200)}`)
  const back = new URL(res.location, loginURL)
  if (back.pathname !== authorizeURL.pathname) fail(`sent to ${back.pathname}, want ${authorizeURL.pathname}`)

  res = await get('authorize (signed in)', back)
  if (res.r.status !== 302 || !res.location) fail(`status ${res.r.status}, want 302 to the redirect URI: ${res.text.slice(0, 200)}`)
  const callback = new URL(res.location)
  if (callback.origin + callback.pathname !== new URL(redirectUri).origin + new URL(redirectUri).pathname) fail('redirected elsewhere than the redirect URI')

  step = 'validateAuthResponse'
  const issInResponse = callback.searchParams.get('iss')
  const callbackParams = oauth.validateAuthResponse(as, client, callback, state)

  step = 'code exchange'
  let tokenResponse
  const tokens = await withNonceRetry(
    'token',
    () => oauth.authorizationCodeGrantRequest(as, client, clientAuth, callbackParams, redirectUri, codeVerifier, { ...http(), DPoP }),
    async (r) => {
      tokenResponse = r
      wireTokenType.token = await rawTokenType(r)
      return oauth.processAuthorizationCodeResponse(as, client, r, { expectedNonce: nonce, requireIdToken: true })
    },
  )
  if (tokens.token_type !== 'dpop') fail(`token_type ${wireTokenType.token}, want DPoP`)
  const claims = oauth.getValidatedIdTokenClaims(tokens)
  step = 'id token signature'
  // Over plain http the transport proves nothing, so check the ID token's
  // signature against the issuer's JWKS as well.
  await oauth.validateApplicationLevelSignature(as, tokenResponse, http())
  step = 'access token binding'
  const atCnf = jwtPayload(tokens.access_token).cnf
  if (atCnf?.jkt !== jkt) fail(`access token cnf.jkt ${atCnf?.jkt}, want the DPoP key's thumbprint ${jkt}`)
  if (!tokens.refresh_token) fail('no refresh token')

  step = 'userinfo'
  let userinfoRequest
  const capture = {
    // Keep the request as sent, to validate it as a resource server would.
    [oauth.customFetch]: (url, init) => {
      userinfoRequest = new Request(url, { method: init.method, headers: init.headers })
      return fetch(url, init)
    },
  }
  const userinfo = await withNonceRetry(
    'userinfo',
    () => oauth.userInfoRequest(as, client, tokens.access_token, { ...http(), ...capture, DPoP }),
    (r) => oauth.processUserInfoResponse(as, client, claims.sub, r),
  )
  step = 'access token as a resource server sees it'
  // oauth4webapi's resource-server side (RFC 9068 + RFC 9449): the JWT's
  // signature and claims against the JWKS, and the proof sent to userinfo
  // against the token's cnf.jkt, ath, htm and htu.
  const rs = await oauth.validateJwtAccessToken(as, userinfoRequest, issuer.href, { ...http(), requireDPoP: true })

  step = 'userinfo with the token as Bearer'
  // A DPoP-bound token presented without its key must be refused.
  let bearerRefused = false
  try {
    const r = await oauth.userInfoRequest(as, client, tokens.access_token, http())
    await oauth.processUserInfoResponse(as, client, claims.sub, r)
  } catch (err) {
    if (!(err instanceof oauth.WWWAuthenticateChallengeError) || err.status !== 401) throw err
    bearerRefused = true
  }
  if (!bearerRefused) fail('userinfo accepted the DPoP-bound token as a Bearer token')

  step = 'refresh'
  const refreshed = await withNonceRetry(
    'refresh',
    () => oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, { ...http(), DPoP }),
    async (r) => {
      wireTokenType.refresh = await rawTokenType(r)
      return oauth.processRefreshTokenResponse(as, client, r)
    },
  )
  if (refreshed.token_type !== 'dpop') fail(`token_type ${wireTokenType.refresh}, want DPoP`)
  const rtCnf = jwtPayload(refreshed.access_token).cnf
  if (rtCnf?.jkt !== jkt) fail(`refreshed access token cnf.jkt ${rtCnf?.jkt}, want ${jkt}`)
  if (refreshed.access_token === tokens.access_token) fail('the refresh returned the same access token')
  const refreshedClaims = oauth.getValidatedIdTokenClaims(refreshed)

  console.log(JSON.stringify({
    ok: true,
    library: 'oauth4webapi',
    issuer: as.issuer,
    client_id: clientId,
    client_auth: clientSecret ? 'client_secret_basic' : 'none',
    dpop: { alg: 'ES256', jkt },
    par: { request_uri: true, expires_in: par.expires_in },
    authorization: { iss: issInResponse, state_checked: true },
    token: {
      token_type: wireTokenType.token,
      cnf_jkt: atCnf.jkt,
      scope: tokens.scope,
      refresh_token: true,
      id_token: { sub: claims.sub, nonce_checked: claims.nonce === nonce, signature_checked: true, amr: claims.amr ?? null },
    },
    resource_server_check: { sub: rs.sub, client_id: rs.client_id, cnf_jkt: rs.cnf?.jkt, typ_at_jwt: true },
    userinfo: { sub: userinfo.sub, sub_matches: userinfo.sub === claims.sub, email: userinfo.email ?? null, bearer_refused: bearerRefused },
    refresh: {
      token_type: wireTokenType.refresh,
      cnf_jkt: rtCnf.jkt,
      new_access_token: true,
      refresh_token_rotated: !!refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token,
      id_token_sub: refreshedClaims?.sub ?? null,
    },
    dpop_nonce_retries: nonceRetries,
  }))
}

main().catch((err) => {
  // The message and the OAuth error, never a request or response body
  // that might hold a token.
  const detail = err instanceof oauth.ResponseBodyError
    ? ` (HTTP ${err.status} ${err.error}: ${err.error_description ?? ''})`
    : err instanceof oauth.WWWAuthenticateChallengeError
      ? ` (HTTP ${err.status} ${JSON.stringify(err.cause.map((c) => c.parameters))})`
      : err?.code ? ` (${err.code})`
        : err?.cause ? ` (${err.cause.code ?? err.cause.name ?? ''} ${err.cause.message ?? ''})` : ''
  console.error(`dpop-flow: FAILED at ${step}: ${err?.message ?? err}${detail}`)
  process.exit(1)
})
