package faultproxy

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Action is what the proxy does to a request a rule matches.
type Action int

const (
	DropAfter    Action = iota + 1 // pass it on; drop the connection at the answer
	HoldUnsent                     // never pass it on; answer nothing until the client gives up
	HoldAnswered                   // pass it on; answer nothing until the client gives up
	Status                         // answer Rule.Status without passing it on
	Delay                          // pass it on after Rule.Delay
	ResetWatch                     // a watch: pass it on, cut it after Rule.Delay
	StatusAfter                    // pass it on (the change is made), then answer Rule.Status, as a gateway that lost the upstream's answer
)

// Rule chooses requests and what happens to them.
type Rule struct {
	Method string // "" any
	Path   string // a substring of the URL path; "" any
	Query  string // a substring of the raw query; "" any
	Watch  *bool  // nil any
	Skip   int    // let this many matching requests through first
	Times  int    // 0: every matching request after Skip
	Action Action
	Status int
	Delay  time.Duration

	seen, hit int
}

// Proxy is a running fault proxy; it stops when the test ends.
type Proxy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	rules []*Rule
	log   []string
}

type ruleKey struct{}

// New starts a proxy before the API server of cfg, which reaches it with
// cfg's credentials: a client of the proxy needs none.
func New(t testing.TB, cfg *rest.Config, rules ...*Rule) *Proxy {
	t.Helper()
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{rules: rules}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = transport
	rp.FlushInterval = -1 // watches stream
	rp.ModifyResponse = func(resp *http.Response) error {
		rule, _ := resp.Request.Context().Value(ruleKey{}).(*Rule)
		if rule == nil {
			return nil
		}
		switch rule.Action {
		case DropAfter:
			resp.Body.Close()
			panic(http.ErrAbortHandler) // the change is made; its answer never arrives
		case HoldAnswered:
			resp.Body.Close()
			<-resp.Request.Context().Done()
			panic(http.ErrAbortHandler)
		case StatusAfter:
			resp.Body.Close()
			body := status(rule.Status)
			resp.StatusCode, resp.Status = rule.Status, fmt.Sprintf("%d injected", rule.Status)
			resp.Header = http.Header{"Content-Type": {"application/json"}}
			resp.Body, resp.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
		case ResetWatch:
			body := resp.Body
			time.AfterFunc(rule.Delay, func() { body.Close() })
		}
		return nil
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rule := p.match(r); rule != nil {
			switch rule.Action {
			case HoldUnsent:
				// The server notices the client going away only once the body is read.
				_, _ = io.Copy(io.Discard, r.Body)
				<-r.Context().Done()
				return
			case Status:
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				if rule.Status == http.StatusTooManyRequests {
					w.Header().Set("Retry-After", "1")
				}
				w.WriteHeader(rule.Status)
				_, _ = io.WriteString(w, status(rule.Status))
				return
			case Delay:
				time.Sleep(rule.Delay)
			}
			r = r.WithContext(context.WithValue(r.Context(), ruleKey{}, rule))
		}
		rp.ServeHTTP(w, r)
	}))
	p.srv.StartTLS()
	t.Cleanup(func() { p.srv.CloseClientConnections(); p.srv.Close() })
	return p
}

// status is a Kubernetes Status body for code.
func status(code int) string {
	reason := map[int]string{429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}[code]
	return fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"injected %d","reason":%q,"code":%d}`, code, reason, code)
}

func (p *Proxy) match(r *http.Request) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	isWatch := r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1"
	for _, rule := range p.rules {
		if rule.Method != "" && rule.Method != r.Method || rule.Path != "" && !strings.Contains(r.URL.Path, rule.Path) ||
			rule.Query != "" && !strings.Contains(r.URL.RawQuery, rule.Query) || rule.Watch != nil && *rule.Watch != isWatch {
			continue
		}
		rule.seen++
		if rule.seen <= rule.Skip || rule.Times > 0 && rule.hit >= rule.Times {
			continue
		}
		rule.hit++
		p.log = append(p.log, fmt.Sprintf("%s %s?%s -> action %d", r.Method, r.URL.Path, r.URL.RawQuery, rule.Action))
		return rule
	}
	return nil
}

// Hits lists the requests a rule matched, in order.
func (p *Proxy) Hits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// CloseClientConnections ends every connection to the proxy, held ones too.
func (p *Proxy) CloseClientConnections() { p.srv.CloseClientConnections() }

// Point makes a kubeconfig reach the API server through the proxy, which adds
// the credentials: its users lose theirs.
func (p *Proxy) Point(cfg *clientcmdapi.Config) {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	for _, cl := range cfg.Clusters {
		cl.Server = p.srv.URL
		cl.CertificateAuthority, cl.CertificateAuthorityData = "", ca
	}
	for name := range cfg.AuthInfos {
		cfg.AuthInfos[name] = clientcmdapi.NewAuthInfo()
	}
}
