package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
)

// The reuse grace lets two clients that share a refresh token (two kubectl
// processes refreshing at once) both go on: the one that comes second,
// within the grace, gets the token the first rotation handed out. That token
// is kept in the session itself (store.Session.PreviousSealedNext), sealed
// with a key derived from the secret it replaced: only a client presenting
// that previous secret can open it, nothing readable is stored, and any
// replica can serve the second client.

func graceAEAD(prevSecret string) (cipher.AEAD, error) {
	key := sha256.Sum256([]byte("portcullis.dev/session/grace\x00" + prevSecret))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealNext seals the token a rotation hands out with a key derived from the
// secret it replaces (nonce, then ciphertext), bound to the session ID.
func sealNext(sid, prevSecret, next string) ([]byte, error) {
	aead, err := graceAEAD(prevSecret)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(next)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, []byte(next), []byte(sid)), nil
}

// openNext opens what sealNext sealed, given the previous secret.
func openNext(sid, prevSecret string, sealed []byte) (string, bool) {
	aead, err := graceAEAD(prevSecret)
	if err != nil || len(sealed) < aead.NonceSize() {
		return "", false
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(sid))
	if err != nil {
		return "", false
	}
	return string(plain), true
}
