package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestForbiddenReason(t *testing.T) {
	t.Parallel()

	tests := []struct {
		addr string
		want string // substring of the reason, "" when allowed
	}{
		{addr: "0.0.0.0", want: "unspecified"},
		{addr: "0.1.2.3", want: "unspecified"},
		{addr: "10.0.0.1", want: "private"},
		{addr: "10.255.255.255", want: "private"},
		{addr: "100.64.0.1", want: "carrier-grade NAT"},
		{addr: "100.100.100.200", want: "carrier-grade NAT"},
		{addr: "100.127.255.255", want: "carrier-grade NAT"},
		{addr: "127.0.0.1", want: "loopback"},
		{addr: "127.255.255.254", want: "loopback"},
		{addr: "169.254.169.254", want: "link-local"},
		{addr: "169.254.0.1", want: "link-local"},
		{addr: "172.16.0.1", want: "private"},
		{addr: "172.31.255.255", want: "private"},
		{addr: "192.168.1.1", want: "private"},
		{addr: "192.0.0.170", want: "IETF protocol assignment"},
		{addr: "192.0.2.1", want: "documentation"},
		{addr: "198.18.0.1", want: "benchmarking"},
		{addr: "198.51.100.7", want: "documentation"},
		{addr: "203.0.113.9", want: "documentation"},
		{addr: "224.0.0.1", want: "multicast"},
		{addr: "239.255.255.250", want: "multicast"},
		{addr: "240.0.0.1", want: "reserved"},
		{addr: "255.255.255.255", want: "broadcast"},
		{addr: "::", want: "unspecified"},
		{addr: "::1", want: "loopback"},
		{addr: "::ffff:127.0.0.1", want: "IPv4-mapped form of 127.0.0.1, a loopback"},
		{addr: "::ffff:169.254.169.254", want: "IPv4-mapped form of 169.254.169.254, a link-local"},
		{addr: "::ffff:10.0.0.1", want: "private"},
		{addr: "::ffff:0.0.0.0", want: "unspecified"},
		{addr: "::127.0.0.1", want: "IPv4-compatible"},
		{addr: "fc00::1", want: "unique local"},
		{addr: "fd00:ec2::254", want: "unique local"},
		{addr: "fe80::1", want: "link-local"},
		{addr: "fe80::1%eth0", want: "link-local"},
		{addr: "febf:ffff::1", want: "link-local"},
		{addr: "fec0::1", want: "site-local"},
		{addr: "ff02::1", want: "multicast"},
		{addr: "ff0e::1", want: "multicast"},
		{addr: "64:ff9b::a9fe:a9fe", want: "NAT64 form of 169.254.169.254"},
		{addr: "64:ff9b::7f00:1", want: "NAT64 form of 127.0.0.1"},
		{addr: "64:ff9b:1::1", want: "local-use NAT64"},
		{addr: "2002:7f00:1::1", want: "6to4 form of 127.0.0.1"},
		{addr: "2002:a9fe:a9fe::1", want: "6to4 form of 169.254.169.254"},
		{addr: "2001::1", want: "Teredo"},
		{addr: "2001:db8::1", want: "documentation"},
		{addr: "100::1", want: "discard-only"},
		{addr: "4000::1", want: "reserved"},
		{addr: "93.184.215.14"},
		{addr: "8.8.8.8"},
		{addr: "1.1.1.1"},
		{addr: "100.63.255.255"},
		{addr: "100.128.0.0"},
		{addr: "172.15.255.255"},
		{addr: "172.32.0.0"},
		{addr: "169.253.255.255"},
		{addr: "223.255.255.255"},
		{addr: "2606:4700:4700::1111"},
		{addr: "2a00:1450:4001:80b::200e"},
		{addr: "::ffff:93.184.215.14"},
		{addr: "64:ff9b::808:808"},
		{addr: "2002:808:808::1"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			got := forbiddenReason(netip.MustParseAddr(tt.addr))
			if tt.want == "" {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, tt.want)
		})
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()

	const https = "it must use https"
	tests := []struct {
		name         string
		url          string
		allowPrivate bool
		wantErr      string // "" when accepted
		wantIs       error
	}{
		{name: "PublicIPv4", url: "https://93.184.215.14/hooks?a=1"},
		{name: "PublicIPv4Port", url: "https://93.184.215.14:8443/hooks"},
		{name: "PublicIPv6", url: "https://[2606:4700:4700::1111]/hooks"},
		{name: "UppercaseScheme", url: "HTTPS://93.184.215.14/"},
		{name: "HTTPLoopback", url: "http://127.0.0.1", wantErr: https},
		{name: "HTTPLoopbackIPv6", url: "http://[::1]", wantErr: https},
		{name: "HTTPMetadata", url: "http://169.254.169.254", wantErr: https},
		{name: "HTTPPrivate", url: "http://10.0.0.1", wantErr: https},
		{name: "HTTPLocalhost", url: "http://localhost", wantErr: https},
		{name: "HTTPPublic", url: "http://93.184.215.14/", wantErr: https},
		{name: "Loopback", url: "https://127.0.0.1/", wantIs: ErrForbiddenAddress,
			wantErr: "127.0.0.1 is a loopback address; use a public HTTPS endpoint, or set CIVICBASE_DEV=true for local testing"},
		{name: "LoopbackIPv6", url: "https://[::1]:8443/", wantIs: ErrForbiddenAddress, wantErr: "loopback"},
		{name: "Metadata", url: "https://169.254.169.254/latest/meta-data/", wantIs: ErrForbiddenAddress,
			wantErr: "link-local"},
		{name: "MetadataIPv6", url: "https://[fd00:ec2::254]/", wantIs: ErrForbiddenAddress, wantErr: "unique local"},
		{name: "MetadataMapped", url: "https://[::ffff:a9fe:a9fe]/", wantIs: ErrForbiddenAddress,
			wantErr: "IPv4-mapped form of 169.254.169.254"},
		{name: "Private", url: "https://10.0.0.1/", wantIs: ErrForbiddenAddress, wantErr: "private"},
		{name: "Private172", url: "https://172.20.1.1/", wantIs: ErrForbiddenAddress, wantErr: "private"},
		{name: "Private192", url: "https://192.168.0.10/", wantIs: ErrForbiddenAddress, wantErr: "private"},
		{name: "CGNAT", url: "https://100.64.0.1/", wantIs: ErrForbiddenAddress, wantErr: "carrier-grade NAT"},
		{name: "Unspecified", url: "https://0.0.0.0/", wantIs: ErrForbiddenAddress, wantErr: "unspecified"},
		{name: "UnspecifiedIPv6", url: "https://[::]/", wantIs: ErrForbiddenAddress, wantErr: "unspecified"},
		{name: "Multicast", url: "https://224.0.0.1/", wantIs: ErrForbiddenAddress, wantErr: "multicast"},
		{name: "Broadcast", url: "https://255.255.255.255/", wantIs: ErrForbiddenAddress, wantErr: "broadcast"},
		{name: "LinkLocalZone", url: "https://[fe80::1%25eth0]/", wantIs: ErrForbiddenAddress, wantErr: "link-local"},
		{name: "Localhost", url: "https://localhost/", wantIs: ErrForbiddenAddress, wantErr: `host "localhost" is a loopback name`},
		{name: "LocalhostUpperDot", url: "https://LOCALHOST.:8443/", wantIs: ErrForbiddenAddress, wantErr: "loopback name"},
		{name: "LocalhostSubdomain", url: "https://api.localhost/", wantIs: ErrForbiddenAddress, wantErr: "loopback name"},
		{name: "ShortIPv4", url: "https://127.1/", wantIs: ErrForbiddenAddress, wantErr: "non-standard form"},
		{name: "DecimalIPv4", url: "https://2130706433/", wantIs: ErrForbiddenAddress, wantErr: "non-standard form"},
		{name: "HexIPv4", url: "https://0x7f000001/", wantIs: ErrForbiddenAddress, wantErr: "non-standard form"},
		{name: "HexOctetIPv4", url: "https://0x7f.0.0.1/", wantIs: ErrForbiddenAddress, wantErr: "non-standard form"},
		{name: "OctalIPv4", url: "https://0177.0.0.01/", wantIs: ErrForbiddenAddress, wantErr: "non-standard form"},
		{name: "UserInfo", url: "https://user:s3cr3t@93.184.215.14/", wantErr: "user name or password"},
		{name: "UserOnly", url: "https://user@93.184.215.14/", wantErr: "user name or password"},
		{name: "Relative", url: "/hooks", wantErr: "must be absolute"},
		{name: "NoScheme", url: "93.184.215.14/hooks", wantErr: "must be absolute"},
		{name: "Opaque", url: "https:93.184.215.14", wantErr: "must be absolute"},
		{name: "NoHost", url: "https:///hooks", wantErr: "host is missing"},
		{name: "PortOnly", url: "https://:443/hooks", wantErr: "host is missing"},
		{name: "PortZero", url: "https://93.184.215.14:0/", wantErr: "not between 1 and 65535"},
		{name: "PortTooBig", url: "https://93.184.215.14:70000/", wantErr: "not between 1 and 65535"},
		{name: "FTP", url: "ftp://93.184.215.14/", wantErr: `scheme "ftp" is not supported`},
		{name: "Unparsable", url: "https://[::1", wantErr: "invalid webhook URL: missing ']' in host"},
		{name: "UnparsableWithPassword", url: "https://user:s3cr3t@[::1", wantErr: "missing ']' in host"},
		{name: "DevHTTPLoopback", url: "http://127.0.0.1:8080/hooks", allowPrivate: true},
		{name: "DevLocalhost", url: "http://localhost/", allowPrivate: true},
		{name: "DevHTTPSLoopbackIPv6", url: "https://[::1]/", allowPrivate: true},
		{name: "DevMetadata", url: "http://169.254.169.254/", allowPrivate: true},
		{name: "DevPrivate", url: "http://10.0.0.1", allowPrivate: true},
		{name: "DevUserInfo", url: "http://user:s3cr3t@127.0.0.1/", allowPrivate: true, wantErr: "user name or password"},
		{name: "DevFTP", url: "ftp://127.0.0.1/", allowPrivate: true, wantErr: "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := Guard{AllowPrivate: tt.allowPrivate}.CheckURL(ctx, tt.url)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			if tt.wantIs != nil {
				require.ErrorIs(t, err, tt.wantIs)
			}
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}

func TestControl(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name         string
		address      string
		allowPrivate bool
		wantErr      string
	}{
		{name: "Public", address: "93.184.215.14:443"},
		{name: "PublicIPv6", address: "[2606:4700:4700::1111]:443"},
		{name: "Loopback", address: "127.0.0.1:443", wantErr: "127.0.0.1 is a loopback address"},
		{name: "LoopbackIPv6", address: "[::1]:443", wantErr: "::1 is a loopback address"},
		{name: "Metadata", address: "169.254.169.254:80", wantErr: "link-local"},
		{name: "MetadataIPv6", address: "[fd00:ec2::254]:80", wantErr: "unique local"},
		{name: "Mapped", address: "[::ffff:10.0.0.1]:443", wantErr: "IPv4-mapped form of 10.0.0.1"},
		{name: "NotAnAddress", address: "localhost:443", wantErr: "not an IP address and port"},
		{name: "DevLoopback", address: "127.0.0.1:443", allowPrivate: true},
		{name: "DevMetadata", address: "169.254.169.254:80", allowPrivate: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Guard{AllowPrivate: tt.allowPrivate}.Control("tcp", tt.address, nil)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrForbiddenAddress)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// countingServer starts a loopback test server that counts its requests and
// serves them with handler.
func countingServer(t *testing.T, tlsServer bool, handler http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		handler(w, r)
	})
	var server *httptest.Server
	if tlsServer {
		server = httptest.NewTLSServer(wrapped)
	} else {
		server = httptest.NewServer(wrapped)
	}
	t.Cleanup(server.Close)
	return server, &hits
}

func noContent(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

// newTestClient returns a client from NewHTTPClient that trusts server's
// certificate and closes its idle connections when the test ends.
func newTestClient(t *testing.T, g Guard, server *httptest.Server) *http.Client {
	t.Helper()
	client := NewHTTPClient(g, 2*time.Second, 5*time.Second)
	if server.TLS != nil {
		trusted := server.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		client.Transport.(*http.Transport).TLSClientConfig.RootCAs = trusted
	}
	t.Cleanup(client.CloseIdleConnections)
	return client
}

func post(t *testing.T, client *http.Client, url string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{}`))
	require.NoError(t, err)
	resp, err := client.Do(req)
	if resp != nil {
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	return resp, err
}

func TestHTTPClientRejectsLoopbackAtConnect(t *testing.T) {
	t.Parallel()

	for _, tlsServer := range []bool{true, false} {
		server, hits := countingServer(t, tlsServer, noContent)
		client := newTestClient(t, Guard{}, server)

		_, err := post(t, client, server.URL)
		require.ErrorIs(t, err, ErrForbiddenAddress)
		require.ErrorContains(t, err, "127.0.0.1 is a loopback address")

		// A name resolved at connect time is checked too, as a rebound DNS
		// name would be.
		_, err = post(t, client, strings.Replace(server.URL, "127.0.0.1", "localhost", 1))
		require.ErrorIs(t, err, ErrForbiddenAddress)
		require.Zero(t, hits.Load())
	}
}

func TestHTTPClientAllowsLoopbackInDevelopment(t *testing.T) {
	t.Parallel()

	server, hits := countingServer(t, true, noContent)
	client := newTestClient(t, Guard{AllowPrivate: true}, server)

	resp, err := post(t, client, server.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, int64(1), hits.Load())
}

func TestHTTPClientDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()

	target, targetHits := countingServer(t, false, noContent)
	redirector, _ := countingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/internal", http.StatusFound)
	})
	client := newTestClient(t, Guard{AllowPrivate: true}, redirector)

	resp, err := post(t, client, redirector.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, target.URL+"/internal", resp.Header.Get("Location"))
	require.Zero(t, targetHits.Load())
}

func TestNewHTTPClientSettings(t *testing.T) {
	t.Parallel()

	client := NewHTTPClient(Guard{}, 0, 0)
	transport, ok := client.Transport.(*http.Transport)
	require.True(t, ok)
	require.Nil(t, transport.Proxy, "a proxy would connect past the address check")
	require.Equal(t, 64, transport.MaxIdleConnsPerHost)
	require.False(t, transport.DisableKeepAlives)
	require.Equal(t, uint16(tls.VersionTLS12), transport.TLSClientConfig.MinVersion)
	require.Equal(t, 30*time.Second, client.Timeout)
	require.Equal(t, 10*time.Second, transport.TLSHandshakeTimeout)
	require.True(t, errors.Is(client.CheckRedirect(nil, nil), http.ErrUseLastResponse))

	client = NewHTTPClient(Guard{}, time.Second, 2*time.Second)
	require.Equal(t, 2*time.Second, client.Timeout)
}
