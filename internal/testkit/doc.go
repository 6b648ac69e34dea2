// Package testkit holds what Portcullis's tests share: a test PKI (CAs,
// serving and client certificates, as PEM files) and a fake OpenID Connect
// identity provider. It is internal and for tests only: nothing outside the
// module can import it, and no production code may.
package testkit
