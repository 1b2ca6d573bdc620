package httpapi

import (
	"fmt"
	"net/http"
)

// headerLimit is the max size in bytes of a request line and its headers
// that the API serves. Larger ones get a JSON 431 from limitHeaders.
// net/http rejects requests past maxHeaderBytes, plus the 4 KiB of slack it
// reads beyond that, with a plain-text 431 before any handler runs, so only
// requests between the two limits get the JSON error.
const headerLimit = 32 << 10

// headerSize returns the size of r's request line and headers as a client
// sends them, each line with its CRLF. net/http moves the Host header out of
// r.Header into r.Host.
func headerSize(r *http.Request) int {
	n := len(r.Method) + len(" ") + len(r.RequestURI) + len(" ") + len(r.Proto) + len("\r\n")
	n += len("Host: ") + len(r.Host) + len("\r\n")
	for key, values := range r.Header {
		for _, value := range values {
			n += len(key) + len(": ") + len(value) + len("\r\n")
		}
	}
	return n
}

// limitHeaders rejects requests whose request line and headers exceed
// headerLimit with a JSON 431 and closes their connection.
func limitHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if size := headerSize(r); size > headerLimit {
			w.Header().Set("Connection", "close")
			writeHTTPError(w, &apiError{
				Status: http.StatusRequestHeaderFieldsTooLarge,
				Code:   "headers_too_large",
				Message: fmt.Sprintf("request line and headers are %d bytes, more than the limit of %d; send fewer or shorter headers",
					size, headerLimit),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}
