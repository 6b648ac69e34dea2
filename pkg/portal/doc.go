// Package portal is Portcullis's login portal: the OpenID Connect relying
// party that logs people in at their identity provider (IdP), creates their
// session (pkg/session) and mints their cluster tokens (pkg/token), for a
// browser, for the portcullis CLI through a loopback redirect (RFC 8252), or
// for a device that has no browser (RFC 8628, served by Portcullis itself).
//
// Endpoints (all under the paths the server's authorizer makes public):
//
//	GET  /login                 IdP chooser (straight to the IdP when there is one)
//	GET  /login/<idp>           starts the authorization-code flow with PKCE (S256), state and nonce
//	GET, POST /login/<idp>      of an LDAP directory: its password form (password.go)
//	GET  /callback              the IdP's redirect back: the one redirect URI registered at every IdP
//	GET  /device, POST /device  the page where a person enters a device's user code
//	POST /device/code           device authorization request (RFC 8628 §3.1)
//	POST /device/token          device access token request (RFC 8628 §3.4)
//	GET  /portal/               who is logged in in this browser, kubectl set-up
//	GET  /portal/kubeconfig     a kubeconfig that uses the CLI as exec plugin
//	POST /portal/logout         ends this browser's session
//	GET  /portal/sessions       the signed-in user's sessions ("your sessions")
//	POST /portal/sessions       ends one of them, or all (all=1: sign out everywhere)
//	GET  /                      a browser (Accept: text/html, no credential) is sent to /portal/
//	GET  /portal/api/clusters   clusters and IdPs, for `portcullis kubeconfig`
//	POST /portal/api/token      the CLI exchanges its one-time code (+ PKCE verifier)
//	POST /portal/api/refresh    a new cluster token and a rotated refresh token
//	POST /portal/api/session    what a refresh token's session says (no rotation)
//	POST /portal/api/logout     ends a session
//	POST /portal/api/password   the CLI's password login at an LDAP directory
//
// Login state (state, nonce, PKCE verifier, the CLI's parameters, one-time
// codes, device codes) lives in this process's memory for minutes, and every
// piece is single-use; the login is bound to the browser that started it by
// a HttpOnly, Secure, SameSite=Lax cookie whose hash the state holds. With
// several replicas, a login must come back to the replica that started it
// (session affinity); sessions themselves are in the shared store.
//
// Every outcome of a login, refresh and logout is written to the audit event
// of its request (annotations portcullis.dev/user, idp, groups, outcome) and
// counted in metrics.
//
// This package must never:
//   - log, audit or put into an error page a token, code, secret or verifier;
//   - redirect anywhere but to the IdP's authorization endpoint, to a
//     loopback address the CLI gave (http://127.0.0.1 or http://[::1]), or to
//     its own pages: no open redirects;
//   - answer a client's mistake (expired or replayed state, wrong verifier,
//     unknown IdP, bad redirect) with a 5xx, or leave a session behind for a
//     login that failed;
//   - mint a token for a cluster whose access policy refuses the user.
package portal
