package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrForbiddenAddress means a webhook URL names or resolves to an address that
// only development mode may reach: loopback, private, link-local, carrier-grade
// NAT, unspecified, multicast, broadcast or another special-purpose address.
var ErrForbiddenAddress = errors.New("forbidden webhook address")

// forbiddenAdvice ends every error about a forbidden address.
const forbiddenAdvice = "use a public HTTPS endpoint, or set CIVICBASE_DEV=true for local testing"

// Guard keeps webhook requests away from the service's own network. Without
// AllowPrivate it accepts only https URLs whose host resolves to public
// addresses. CheckURL checks a URL when it is registered, and Control, run
// by the dialer of NewHTTPClient, checks every connection, so a DNS answer
// that changes after registration cannot reach an internal address.
type Guard struct {
	// AllowPrivate allows http URLs and every address, for local testing.
	// Development mode (CIVICBASE_DEV=true) sets it.
	AllowPrivate bool
}

// CheckURL checks a webhook URL at registration. The URL must be absolute,
// use https (or http when AllowPrivate is set), have a host and no user
// name or password. Unless AllowPrivate is set, the host must not be
// localhost or a numeric IPv4 form other than a dotted quad, and no address
// it resolves to through net.DefaultResolver may be forbidden. The error
// names the host and the address, and wraps ErrForbiddenAddress when an
// address is the cause.
func (g Guard) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, which may contain a password.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return fmt.Errorf("invalid webhook URL: %w", err)
	}
	host, err := g.checkURLSyntax(u)
	if err != nil {
		return err
	}
	if g.AllowPrivate {
		return nil
	}
	return checkHost(ctx, host)
}

// checkURLSyntax checks the parts of u that need no DNS and returns its host.
func (g Guard) checkURLSyntax(u *url.URL) (string, error) {
	switch {
	case !u.IsAbs() || u.Opaque != "":
		return "", errors.New("invalid webhook URL: it must be absolute, such as https://example.com/hooks")
	case u.Scheme == "https":
	case u.Scheme == "http" && g.AllowPrivate:
	case u.Scheme == "http":
		return "", errors.New("invalid webhook URL: it must use https, not http; " +
			"set CIVICBASE_DEV=true to allow http for local testing")
	default:
		return "", fmt.Errorf("invalid webhook URL: scheme %q is not supported; use https", truncate(u.Scheme, 20))
	}
	if u.User != nil {
		return "", errors.New("invalid webhook URL: it must not contain a user name or password; " +
			"authenticate the request through the signature instead")
	}
	host := u.Hostname()
	if host == "" {
		return "", errors.New("invalid webhook URL: the host is missing")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("invalid webhook URL: port %q is not between 1 and 65535", truncate(port, 20))
		}
	}
	return host, nil
}

// checkHost checks the host of a webhook URL and every address it resolves
// to.
func checkHost(ctx context.Context, host string) error {
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return fmt.Errorf("%w: host %q is a loopback name; %s", ErrForbiddenAddress, host, forbiddenAdvice)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return checkAddr(host, addr)
	}
	if isNumericHost(name) {
		// Browsers, curl and getaddrinfo read 127.1, 2130706433 and
		// 0x7f.0.0.1 as IPv4 addresses, which Go's resolver may not.
		return fmt.Errorf("%w: host %q is an IPv4 address in a non-standard form; "+
			"write it as four decimal numbers such as 192.0.2.1", ErrForbiddenAddress, host)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	if err != nil {
		return fmt.Errorf("resolving webhook host %q: %w", host, err)
	}
	for _, addr := range addrs {
		if err := checkAddr(host, addr); err != nil {
			return err
		}
	}
	return nil
}

// isNumericHost reports whether the last label of a host name consists of
// decimal digits or is a 0x hex number. No top-level domain has that form,
// and the WHATWG URL parser reads such a host as an IPv4 address.
func isNumericHost(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	if digits, ok := strings.CutPrefix(last, "0x"); ok {
		return strings.Trim(digits, "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// checkAddr returns an error wrapping ErrForbiddenAddress when addr, which
// host resolved to, is forbidden.
func checkAddr(host string, addr netip.Addr) error {
	reason := forbiddenReason(addr)
	if reason == "" {
		return nil
	}
	if host == addr.String() || strings.EqualFold(host, addr.WithZone("").String()) {
		return fmt.Errorf("%w: host %s is %s; %s", ErrForbiddenAddress, host, reason, forbiddenAdvice)
	}
	return fmt.Errorf("%w: host %q resolves to %s, %s; %s", ErrForbiddenAddress, host, addr, reason, forbiddenAdvice)
}

// addressRange is a special-purpose address block and the reason it is
// forbidden, phrased to follow "is".
type addressRange struct {
	prefix netip.Prefix
	reason string
}

// forbiddenIPv4 lists the IPv4 blocks that a webhook must not reach: blocks
// of the local host and network, blocks that are not routed on the public
// internet, multicast and the reserved 240.0.0.0/4.
var forbiddenIPv4 = []addressRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified (this network) address"},
	{netip.MustParsePrefix("10.0.0.0/8"), "a private address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address, where cloud metadata services listen"},
	{netip.MustParsePrefix("172.16.0.0/12"), "a private address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol assignment address"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
	{netip.MustParsePrefix("192.168.0.0/16"), "a private address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
}

// forbiddenIPv6 lists the IPv6 blocks that a webhook must not reach. The
// first match wins. IPv4-mapped addresses are checked as IPv4 before this
// list, and addresses outside 2000::/3 are forbidden after it.
var forbiddenIPv6 = []addressRange{
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	{netip.MustParsePrefix("::/96"), "a deprecated IPv4-compatible address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address"},
	{netip.MustParsePrefix("100::/64"), "a discard-only address"},
	{netip.MustParsePrefix("2001::/32"), "a Teredo tunnel address"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
	{netip.MustParsePrefix("fc00::/7"), "a unique local (private) address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("fec0::/10"), "a deprecated site-local address"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
}

var (
	// nat64Prefix is the well-known NAT64 prefix, whose last 32 bits are an
	// IPv4 address that a NAT64 gateway connects to.
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	// sixToFourPrefix is the 6to4 prefix, whose next 32 bits are an IPv4
	// address.
	sixToFourPrefix = netip.MustParsePrefix("2002::/16")
	// globalUnicastIPv6 is the only IPv6 block allocated for global unicast.
	globalUnicastIPv6 = netip.MustParsePrefix("2000::/3")
)

// forbiddenReason returns why addr is forbidden, or "" when a webhook may
// connect to it. IPv4 addresses embedded in IPv6 (mapped, NAT64 and 6to4)
// are checked as the IPv4 address they lead to.
func forbiddenReason(addr netip.Addr) string {
	addr = addr.WithZone("")
	if addr.Is4In6() {
		return embeddedReason("an IPv4-mapped form of ", addr.Unmap())
	}
	if addr.Is4() {
		return rangeReason(forbiddenIPv4, addr)
	}
	if reason := rangeReason(forbiddenIPv6, addr); reason != "" {
		return reason
	}
	raw := addr.As16()
	switch {
	case nat64Prefix.Contains(addr):
		return embeddedReason("a NAT64 form of ", netip.AddrFrom4([4]byte(raw[12:16])))
	case sixToFourPrefix.Contains(addr):
		return embeddedReason("a 6to4 form of ", netip.AddrFrom4([4]byte(raw[2:6])))
	case !globalUnicastIPv6.Contains(addr):
		return "a reserved address"
	}
	return ""
}

// embeddedReason returns the reason the IPv4 address embedded in an IPv6
// address is forbidden, after the given description of the form.
func embeddedReason(form string, v4 netip.Addr) string {
	if reason := rangeReason(forbiddenIPv4, v4); reason != "" {
		return form + v4.String() + ", " + reason
	}
	return ""
}

func rangeReason(ranges []addressRange, addr netip.Addr) string {
	for _, r := range ranges {
		if r.prefix.Contains(addr) {
			return r.reason
		}
	}
	return ""
}

// Control rejects a connection to a forbidden address unless AllowPrivate is
// set. It has the signature of net.Dialer.Control, which runs after DNS
// resolution on every connection attempt, so it catches DNS rebinding and
// hosts that resolve differently after registration.
func (g Guard) Control(network, address string, _ syscall.RawConn) error {
	if g.AllowPrivate {
		return nil
	}
	addrPort, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: dial address %q on %s is not an IP address and port", ErrForbiddenAddress, address, network)
	}
	addr := addrPort.Addr()
	if reason := forbiddenReason(addr); reason != "" {
		return fmt.Errorf("%w: %s is %s; %s", ErrForbiddenAddress, addr, reason, forbiddenAdvice)
	}
	return nil
}

// Defaults of NewHTTPClient for a zero timeout.
const (
	defaultConnectTimeout = 10 * time.Second
	defaultTotalTimeout   = 30 * time.Second
)

// NewHTTPClient returns a client for sending webhooks. Its dialer runs
// g.Control on every connection and gives up after connectTimeout (10 s when
// zero). Each request, including reading the response body, is limited to
// totalTimeout (30 s when zero). The client never follows redirects: it
// returns the 3xx response as is. It ignores proxy environment variables,
// because a proxy would connect on the client's behalf, past the address
// check. It keeps up to 64 idle connections per host and requires TLS 1.2 or
// later.
func NewHTTPClient(g Guard, connectTimeout, totalTimeout time.Duration) *http.Client {
	if connectTimeout <= 0 {
		connectTimeout = defaultConnectTimeout
	}
	if totalTimeout <= 0 {
		totalTimeout = defaultTotalTimeout
	}
	dialer := &net.Dialer{
		Timeout:   connectTimeout,
		KeepAlive: 30 * time.Second,
		Control:   g.Control,
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connectTimeout,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &http.Client{
		Transport: transport,
		Timeout:   totalTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
