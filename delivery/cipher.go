package delivery

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Prefixes of stored secrets.
const (
	plainPrefix  = "plain:"
	aesgcmPrefix = "aesgcm:"
)

// Cipher encrypts webhook secrets at rest with AES-256-GCM when a key is
// configured, and stores them as they are otherwise. A nil *Cipher is valid
// and stores secrets unencrypted.
type Cipher struct {
	aead cipher.AEAD
}

// NewCipher returns a Cipher for a base64 key of 32 bytes, or nil when key
// is empty.
func NewCipher(key string) (*Cipher, error) {
	if key == "" {
		return nil, nil
	}
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(raw) != 32 {
		return nil, errors.New("CIVICBASE_ENCRYPTION_KEY must be 32 bytes in base64 (44 characters); generate one with `openssl rand -base64 32`")
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("creating AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating GCM: %w", err)
	}
	return &Cipher{aead: aead}, nil
}

// Seal returns the stored form of secret.
func (c *Cipher) Seal(secret string) (string, error) {
	if c == nil {
		return plainPrefix + secret, nil
	}
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("generating nonce: %w", err)
	}
	sealed := c.aead.Seal(nonce, nonce, []byte(secret), nil)
	return aesgcmPrefix + base64.StdEncoding.EncodeToString(sealed), nil
}

// Open returns the secret from its stored form.
func (c *Cipher) Open(stored string) (string, error) {
	if rest, ok := strings.CutPrefix(stored, plainPrefix); ok {
		return rest, nil
	}
	rest, ok := strings.CutPrefix(stored, aesgcmPrefix)
	if !ok {
		return "", errors.New("stored secret has an unknown format")
	}
	if c == nil {
		return "", errors.New("stored secret is encrypted but CIVICBASE_ENCRYPTION_KEY is not set; set the key it was encrypted with")
	}
	sealed, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(sealed) < c.aead.NonceSize() {
		return "", errors.New("stored secret is not valid base64 ciphertext")
	}
	n := c.aead.NonceSize()
	plain, err := c.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", errors.New("decrypting stored secret failed; CIVICBASE_ENCRYPTION_KEY differs from the key it was encrypted with")
	}
	return string(plain), nil
}
