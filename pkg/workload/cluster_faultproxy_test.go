package workload

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
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// faultProxy is an HTTPS proxy in front of the API server that plays a flaky
// network or gateway for the requests its rules match: answers lost after the
// change is made, requests held, error statuses before or after passing the
// request on, delays, watches cut. Written for an attack on the steps (session
// 28); its findings are the tests that use it.

// faultAction is what the faultProxy does to a request a rule matches.
type faultAction int

const (
	faultDropAfter    faultAction = iota + 1 // pass on; drop the connection at the answer
	faultHoldUnsent                          // never pass on; answer nothing until the client gives up
	faultHoldAnswered                        // pass on; answer nothing until the client gives up
	faultStatus                              // answer status without passing on
	faultDelay                               // pass on after delay
	faultResetWatch                          // a watch: pass on, cut it after delay
	faultStatusAfter                         // pass on (the change is made), then answer status (a gateway that lost the upstream answer)
)

type faultRule struct {
	method string // "" any
	path   string // substring of URL path; "" any
	query  string // substring of raw query; "" any
	watch  *bool  // nil any
	skip   int    // let this many matching requests through first
	times  int    // 0: every time after skip
	action faultAction
	status int
	delay  time.Duration

	seen, hit int
}

type faultProxy struct {
	srv    *httptest.Server
	mu     sync.Mutex
	rules  []*faultRule
	log    []string
	random func(r *http.Request, isWatch bool) *faultRule // when set, asked first
}

func (p *faultProxy) match(r *http.Request) *faultRule {
	p.mu.Lock()
	defer p.mu.Unlock()
	isWatch := r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1"
	if p.random != nil {
		if fr := p.random(r, isWatch); fr != nil {
			p.log = append(p.log, fmt.Sprintf("%s %s?%s -> action %d %d", r.Method, r.URL.Path, r.URL.RawQuery, fr.action, fr.status))
			return fr
		}
	}
	for _, fr := range p.rules {
		if fr.method != "" && fr.method != r.Method || fr.path != "" && !strings.Contains(r.URL.Path, fr.path) ||
			fr.query != "" && !strings.Contains(r.URL.RawQuery, fr.query) || fr.watch != nil && *fr.watch != isWatch {
			continue
		}
		fr.seen++
		if fr.seen <= fr.skip || fr.times > 0 && fr.hit >= fr.times {
			continue
		}
		fr.hit++
		p.log = append(p.log, fmt.Sprintf("%s %s?%s -> action %d", r.Method, r.URL.Path, r.URL.RawQuery, fr.action))
		return fr
	}
	return nil
}

func (p *faultProxy) set(rules ...*faultRule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = rules
}

func (p *faultProxy) hits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

type ruleKey struct{}

func newFaultProxy(c *cluster, rules ...*faultRule) *faultProxy {
	c.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	upstream, _ := url.Parse(cfg.Host)
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	p := &faultProxy{rules: rules}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = transport
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		fr, _ := resp.Request.Context().Value(ruleKey{}).(*faultRule)
		if fr == nil {
			return nil
		}
		switch fr.action {
		case faultDropAfter:
			resp.Body.Close()
			panic(http.ErrAbortHandler)
		case faultHoldAnswered:
			resp.Body.Close()
			<-resp.Request.Context().Done()
			panic(http.ErrAbortHandler)
		case faultStatusAfter:
			resp.Body.Close()
			msg := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"injected %d","reason":"%s","code":%d}`, fr.status, reasonFor(fr.status), fr.status)
			resp.StatusCode = fr.status
			resp.Status = fmt.Sprintf("%d injected", fr.status)
			resp.Header = http.Header{"Content-Type": {"application/json"}}
			resp.Body = io.NopCloser(strings.NewReader(msg))
			resp.ContentLength = int64(len(msg))
		case faultResetWatch:
			body := resp.Body
			go func() { time.Sleep(fr.delay); body.Close() }()
		}
		return nil
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fr := p.match(r)
		if fr != nil {
			switch fr.action {
			case faultHoldUnsent:
				_, _ = io.Copy(io.Discard, r.Body)
				<-r.Context().Done()
				return
			case faultStatus:
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				if fr.status == 429 {
					w.Header().Set("Retry-After", "1")
				}
				w.WriteHeader(fr.status)
				fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"injected %d","reason":"%s","code":%d}`, fr.status, reasonFor(fr.status), fr.status)
				return
			case faultDelay:
				time.Sleep(fr.delay)
			}
			r = r.WithContext(contextWith(r, fr))
		}
		rp.ServeHTTP(w, r)
	}))
	p.srv.StartTLS()
	c.t.Cleanup(func() { p.srv.CloseClientConnections(); p.srv.Close() })
	return p
}

func reasonFor(code int) string {
	switch code {
	case 429:
		return "TooManyRequests"
	case 503:
		return "ServiceUnavailable"
	case 504:
		return "Timeout"
	case 410:
		return "Expired"
	case 500:
		return "InternalError"
	case 502:
		return ""
	}
	return ""
}

func (p *faultProxy) kubeconfig(c *cluster) string {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	return c.writeKubeconfig(func(cfg *clientcmdapi.Config) {
		for _, cl := range cfg.Clusters {
			cl.Server = p.srv.URL
			cl.CertificateAuthority, cl.CertificateAuthorityData = "", ca
		}
		for name := range cfg.AuthInfos {
			cfg.AuthInfos[name] = clientcmdapi.NewAuthInfo()
		}
	})
}

// runBounded runs the step, failing the test if it outlasts limit (the run
// goes on in the background: a hang).
func (c *cluster) runBounded(limit time.Duration, spec stepSpecFn, kubeconfig string, args ...string) (stepRun, bool) {
	c.t.Helper()
	done := make(chan stepRun, 1)
	go func() { done <- c.run(spec(), kubeconfig, args...) }()
	select {
	case r := <-done:
		return r, true
	case <-time.After(limit):
		return stepRun{code: -1}, false
	}
}

type stepSpecFn = func() step.Spec

func contextWith(r *http.Request, fr *faultRule) context.Context {
	return context.WithValue(r.Context(), ruleKey{}, fr)
}
