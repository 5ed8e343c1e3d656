package gitserver

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"time"
)

// endlessCap is where the endless answers end after all, so that a client that
// reads everything returns (and its test fails instead of hanging).
const endlessCap = 64 << 20

const garbagePage = "<!DOCTYPE html>\n<html><head><title>Sign in to the network</title></head><body>Please accept the terms of use.</body></html>\n"

// answerFault answers the faults that need no repository; false when p is none
// of them.
func (s *Server) answerFault(w http.ResponseWriter, req *http.Request, p pending) bool {
	switch p.f {
	case Unavailable:
		http.Error(w, "injected fault: unavailable", http.StatusServiceUnavailable)
	case Drop:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	case Garbage:
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, garbagePage)
	case Stall:
		s.hold(req.Context().Done())
	case EndlessError:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		line := bytes.Repeat([]byte("<p>not found</p>"), 256)
		for n := 0; n < endlessCap && req.Context().Err() == nil; n += len(line) {
			if _, err := w.Write(line); err != nil {
				break
			}
		}
	case Reflect:
		var b bytes.Buffer
		fmt.Fprintf(&b, "Forbidden by policy.\nRequest: %s %s\n", req.Method, req.URL.String())
		names := make([]string, 0, len(req.Header))
		for k := range req.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, v := range req.Header[k] {
				fmt.Fprintf(&b, "%s: %s\n", k, v)
			}
		}
		http.Error(w, b.String(), http.StatusForbidden)
	case Redirect:
		http.Redirect(w, req, p.to+req.URL.RequestURI(), http.StatusTemporaryRedirect)
	case RateLimited:
		w.Header().Set("Retry-After", "60")
		http.Error(w, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", http.StatusForbidden)
	default:
		return false
	}
	return true
}

// spoil serves the real answer of r, spoiled by p.
func (s *Server) spoil(w http.ResponseWriter, req *http.Request, r *Repo, p pending) {
	f := p.f
	if f == Substitute {
		// The first want line asks for p.to instead (same length: the pkt-line
		// lengths stay right).
		body, _ := io.ReadAll(req.Body)
		if i := bytes.Index(body, []byte("want ")); i >= 0 && i+5+len(p.to) <= len(body) && len(p.to) == 40 {
			copy(body[i+5:], p.to)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	real := httptest.NewRecorder()
	s.serveRepo(real, req, r)
	body := real.Body.Bytes()
	for k, v := range real.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(real.Code)
	rc := http.NewResponseController(w)
	switch f {
	case Truncate:
		_, _ = w.Write(body[:len(body)/2])
		_ = rc.Flush()
		panic(http.ErrAbortHandler) // the connection is cut
	case StallMidway:
		_, _ = w.Write(body[:len(body)/2])
		_ = rc.Flush()
		s.hold(req.Context().Done())
	case EndlessProgress:
		_, _ = w.Write(body[:firstPackData(body)])
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		s.holding(1)
		defer s.holding(-1)
		for {
			if _, err := w.Write(pkt("\x02Counting objects: still counting\r")); err != nil {
				return
			}
			_ = rc.Flush()
			select {
			case <-tick.C:
			case <-req.Context().Done():
				return
			}
		}
	default:
		_, _ = w.Write(body)
	}
}

// firstPackData is the offset of the first side-band packet of pack data (band 1)
// in an upload-pack answer, or its end.
func firstPackData(b []byte) int {
	for i := 0; i+4 <= len(b); {
		n, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
		if err != nil {
			break
		}
		if n < 4 { // flush, delimiter
			i += 4
			continue
		}
		if i+int(n) > len(b) {
			break
		}
		if b[i+4] == 1 {
			return i
		}
		i += int(n)
	}
	return len(b)
}

func pkt(payload string) []byte {
	return []byte(fmt.Sprintf("%04x%s", len(payload)+4, payload))
}

// failConn spoils a git or SSH connection: those protocols have no status codes,
// so the HTTP-only faults fall back to Drop or Stall (see Fault).
func (s *Server) failConn(conn net.Conn, f Fault) {
	switch f {
	case Garbage:
		_, _ = io.WriteString(conn, garbagePage)
	case Stall, StallMidway, EndlessError, EndlessProgress:
		if !s.track(conn) {
			break
		}
		s.wg.Add(1)
		s.holding(1)
		go func() {
			defer s.wg.Done()
			defer s.holding(-1)
			defer s.untrack(conn)
			defer conn.Close()
			_, _ = io.Copy(io.Discard, conn) // until the client or Close ends it
		}()
		return
	}
	_ = conn.Close()
}

// hold waits for done, counted in Stalling.
func (s *Server) hold(done <-chan struct{}) {
	s.holding(1)
	defer s.holding(-1)
	<-done
}

func (s *Server) holding(d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalling += d
}

// Stalling is how many requests or connections a stall fault (Stall, StallMidway,
// EndlessProgress) holds right now: a test waits for it before acting on the
// stalled client.
func (s *Server) Stalling() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalling
}
