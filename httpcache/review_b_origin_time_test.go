package httpcache

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// The tests of this file come from the second review of the operators'
// tools (2026-12-05): each comment tells what the reviewer checked or
// found, and the test guards it.

// Review (rev-b): OriginTimeNs is documented as the time the origin calls
// took; a fill streams the origin's response to its client as it records
// it, so a client that reads slowly is counted as origin time, and with it
// every hit's "origin time saved". One slow reader (or an attacker reading
// a miss at 1 byte/s) inflates the mean by orders of magnitude.
func TestReviewBOriginTimeExcludesSlowClient(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	body := strings.Repeat("x", 8<<20) // larger than the socket buffers
	h := mux(t, c, "GET /big/{id}", policy.Policy{TTL: time.Hour}, textOrigin(body))
	srv := httptest.NewServer(h)
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /big/1 HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(1500 * time.Millisecond) // the client does not read yet
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	s := c.Stats()
	t.Logf("origin calls %d, origin time %v", s.OriginCalls, time.Duration(s.OriginTimeNs))
	if s.OriginCalls != 1 {
		t.Fatalf("origin calls %d", s.OriginCalls)
	}
	if d := time.Duration(s.OriginTimeNs); d > 500*time.Millisecond {
		t.Errorf("origin time %v for an origin that answers at once: the slow client's read time is counted as the origin's", d)
	}
}
