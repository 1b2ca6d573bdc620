// Package delivery sends stored events to registered webhook endpoints: it
// signs each request with Standard Webhooks headers and a body signature
// member, and keeps requests away from loopback, private and link-local
// addresses unless development mode allows them.
package delivery
