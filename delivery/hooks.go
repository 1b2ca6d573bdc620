package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/civicbase/civicbase/store"
)

// hookTTL is how long a cached endpoint is trusted. Changes made through
// another instance reach this one within that time.
const hookTTL = time.Second

// hook is an endpoint with its secrets opened.
type hook struct {
	id             string
	url            string
	secret         Secret
	previous       *Secret
	previousExpiry time.Time
	// failingSince starts the endpoint's current failure streak; zero when
	// the last attempt succeeded.
	failingSince time.Time
	loaded       time.Time
}

// signingSecrets returns the secrets to sign with at now: the current one,
// and during a rotation's grace period the previous one too.
func (h *hook) signingSecrets(now time.Time) []Secret {
	if h.previous != nil && now.Before(h.previousExpiry) {
		return []Secret{h.secret, *h.previous}
	}
	return []Secret{h.secret}
}

type hookCache struct {
	store  *store.Store
	cipher *Cipher
	mu     sync.Mutex
	hooks  map[string]*hook
}

func newHookCache(st *store.Store, cipher *Cipher) *hookCache {
	return &hookCache{store: st, cipher: cipher, hooks: map[string]*hook{}}
}

func (c *hookCache) get(ctx context.Context, id string) (*hook, error) {
	c.mu.Lock()
	h, ok := c.hooks[id]
	c.mu.Unlock()
	if ok && time.Since(h.loaded) < hookTTL {
		return h, nil
	}
	w, err := c.store.Webhook(ctx, id)
	if err != nil {
		return nil, err
	}
	h, err = c.open(w)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.hooks[id] = h
	c.mu.Unlock()
	return h, nil
}

func (c *hookCache) open(w store.Webhook) (*hook, error) {
	h := &hook{id: w.ID, url: w.URL, loaded: time.Now()}
	if w.FailingSince != nil {
		h.failingSince = *w.FailingSince
	}
	plain, err := c.cipher.Open(w.Secret)
	if err != nil {
		return nil, fmt.Errorf("opening the secret of webhook %s: %w", w.ID, err)
	}
	if h.secret, err = ParseSecret(plain); err != nil {
		return nil, fmt.Errorf("parsing the secret of webhook %s: %w", w.ID, err)
	}
	if w.PreviousSecret != nil && w.PreviousExpiresAt != nil {
		plain, err := c.cipher.Open(*w.PreviousSecret)
		if err != nil {
			return nil, fmt.Errorf("opening the previous secret of webhook %s: %w", w.ID, err)
		}
		previous, err := ParseSecret(plain)
		if err != nil {
			return nil, fmt.Errorf("parsing the previous secret of webhook %s: %w", w.ID, err)
		}
		h.previous, h.previousExpiry = &previous, *w.PreviousExpiresAt
	}
	return h, nil
}

// setFailingSince updates the cached failure streak after a result is
// recorded. It replaces the cached hook rather than changing it, because
// senders read hooks without a lock.
func (c *hookCache) setFailingSince(id string, since time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.hooks[id]; ok {
		updated := *h
		updated.failingSince = since
		c.hooks[id] = &updated
	}
}

// forget drops an endpoint so the next attempt reloads it.
func (c *hookCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.hooks, id)
}
