package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/civicbase/civicbase/store"
)

// responseExcerpt is how much of a response body is kept with an attempt.
// drainLimit is how much more is read, so the connection can be reused.
const (
	responseExcerpt = 1024
	drainLimit      = 64 << 10
)

// goneReason is the disabled reason of an endpoint that returned 410.
const goneReason = "the endpoint returned status 410 Gone"

// maxRetryAfter caps a receiver's Retry-After so a typo cannot park a
// delivery for years.
const maxRetryAfter = 24 * time.Hour

// outcome classifies one attempt.
type outcome struct {
	code       int
	err        error
	response   string
	retryAfter time.Duration
	// permanent failures are not retried. They are other 4xx statuses,
	// redirects, and addresses the guard rejects.
	permanent bool
	// disable, when set, is why recording the result disables the
	// endpoint: a 410 Gone, or an address the guard rejects.
	disable string
}

// attempt sends one claimed delivery and returns its result. The scheduler
// counts it against the endpoint's PerEndpoint slots.
func (d *Dispatcher) attempt(ctx context.Context, c store.Claimed) store.Result {
	started := time.Now()
	res := store.Result{DeliveryID: c.ID, WebhookID: c.WebhookID, AttemptedAt: started, LeaseUntil: c.LeaseUntil, Attempts: c.Attempts}
	hook, err := d.hooks.get(ctx, c.WebhookID)
	var out outcome
	switch {
	case err != nil:
		out = outcome{err: fmt.Errorf("loading webhook: %w", err)}
	case c.Payload == nil:
		out = outcome{err: errors.New("the event was pruned before delivery"), permanent: true}
	default:
		out = d.post(ctx, hook, c, started)
	}
	res.Duration = time.Since(started)
	return d.settle(res, c, out)
}

// settle turns an outcome into the delivery's next state.
func (d *Dispatcher) settle(res store.Result, c store.Claimed, out outcome) store.Result {
	res.StatusCode, res.Response = out.code, out.response
	if out.err != nil {
		res.Error = out.err.Error()
	}
	attempts := c.Attempts + 1
	switch {
	case out.err == nil:
		res.Status = store.StatusDelivered
	case out.disable != "":
		// Recording the result disables the endpoint in the same
		// transaction, and the delivery waits for it to be enabled again.
		res.Status, res.NextAttempt = store.StatusPending, res.AttemptedAt
		res.DisableReason, res.Uncounted = out.disable, true
	case out.permanent:
		res.Status = store.StatusDead
	default:
		// Delays count from the end of the attempt, so a timeout or a slow
		// 429 does not eat into the wait.
		next, ok := d.nextRetry(attempts, res.AttemptedAt.Add(res.Duration), out.retryAfter)
		res.Status, res.NextAttempt = store.StatusPending, next
		if !ok {
			res.Status = store.StatusDead
		}
	}
	if res.Status == store.StatusDead {
		res.NextAttempt = res.AttemptedAt
	}
	return res
}

func (d *Dispatcher) post(ctx context.Context, hook *hook, c store.Claimed, now time.Time) outcome {
	body, err := SignBody(c.Payload, hook.secret)
	if err != nil {
		return outcome{err: fmt.Errorf("signing the body: %w", err), permanent: true}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.url, bytes.NewReader(body))
	if err != nil {
		return outcome{err: fmt.Errorf("building the request: %w", err), permanent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "civicbase-webhooks/1")
	req.Header.Set("webhook-id", c.EventID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(c.EventID, now, body, hook.signingSecrets(now)...))

	resp, err := d.client.Do(req)
	if errors.Is(err, ErrForbiddenAddress) {
		// A retry cannot help, and failing each delivery for good would
		// turn the backlog into dead deliveries, so the endpoint waits.
		err = redactURL(err)
		return outcome{err: err, disable: "the address guard rejected the endpoint: " + err.Error()}
	}
	if err != nil {
		return outcome{err: redactURL(err)}
	}
	defer resp.Body.Close()
	return classify(resp)
}

func classify(resp *http.Response) outcome {
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, responseExcerpt))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	out := outcome{code: resp.StatusCode, response: validUTF8(excerpt)}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return out
	case code == http.StatusGone:
		out.err, out.disable = errors.New("endpoint returned status 410 Gone; it is disabled until re-enabled"), goneReason
	case code == http.StatusTooManyRequests:
		out.err, out.retryAfter = fmt.Errorf("endpoint returned status %d", code), retryAfter(resp.Header.Get("Retry-After"))
	case code >= 500:
		out.err = fmt.Errorf("endpoint returned status %d", code)
	case code >= 300 && code < 400:
		out.err = fmt.Errorf("endpoint returned status %d; redirects are not followed, so register the final URL", code)
		out.permanent = true
	default:
		out.err, out.permanent = fmt.Errorf("endpoint returned status %d", code), true
	}
	return out
}

// retryAfter parses a Retry-After header in seconds or as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return min(time.Duration(secs)*time.Second, maxRetryAfter)
	}
	if at, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(at), 0), maxRetryAfter)
	}
	return 0
}

func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}

// redactURL removes the query and user info from the URL that net/http
// puts into its errors, because endpoints sometimes carry a token there and
// attempt errors are stored and logged.
func redactURL(err error) error {
	var urlErr *url.Error
	if !errors.As(err, &urlErr) {
		return err
	}
	u, parseErr := url.Parse(urlErr.URL)
	if parseErr != nil {
		urlErr.URL = "(endpoint URL)"
		return err
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	urlErr.URL = u.String()
	return err
}
