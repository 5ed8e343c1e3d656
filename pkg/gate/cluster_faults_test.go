package gate

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
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// gproxy is an HTTPS proxy before the API server that loses, refuses or holds
// the gate's Lease requests its rules match (written for an attack, session 28).
type gfault struct {
	method, path string
	action       string // drop-after, hold, status-after
	status       int
	used         bool
}

type gproxy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	rules []*gfault
	hits  []string
}

func (p *gproxy) match(r *http.Request) *gfault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.rules {
		if !f.used && r.Method == f.method && strings.Contains(r.URL.Path, f.path) {
			f.used = true
			p.hits = append(p.hits, r.Method+" "+r.URL.Path+" "+f.action)
			return f
		}
	}
	return nil
}

type gkey struct{}

func newGProxy(c *cluster, rules ...*gfault) (*gproxy, string) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	up, _ := url.Parse(cfg.Host)
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	p := &gproxy{rules: rules}
	rp := httputil.NewSingleHostReverseProxy(up)
	rp.Transport = tr
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		f, _ := resp.Request.Context().Value(gkey{}).(*gfault)
		if f == nil {
			return nil
		}
		switch f.action {
		case "drop-after":
			resp.Body.Close()
			panic(http.ErrAbortHandler)
		case "status-after":
			resp.Body.Close()
			msg := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected %d","code":%d}`, f.status, f.status)
			resp.StatusCode = f.status
			resp.Header = http.Header{"Content-Type": {"application/json"}}
			resp.Body = io.NopCloser(strings.NewReader(msg))
			resp.ContentLength = int64(len(msg))
		}
		return nil
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := p.match(r); f != nil {
			if f.action == "hold" {
				_, _ = io.Copy(io.Discard, r.Body)
				<-r.Context().Done()
				return
			}
			r = r.WithContext(contextWithFault(r, f))
		}
		rp.ServeHTTP(w, r)
	}))
	p.srv.StartTLS()
	c.t.Cleanup(func() { p.srv.CloseClientConnections(); p.srv.Close() })
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	kc := c.env.WriteKubeconfig(c.t, func(cfg *clientcmdapi.Config) {
		for _, cl := range cfg.Clusters {
			cl.Server = p.srv.URL
			cl.CertificateAuthority, cl.CertificateAuthorityData = "", ca
		}
		for name := range cfg.AuthInfos {
			cfg.AuthInfos[name] = clientcmdapi.NewAuthInfo()
		}
	})
	return p, kc
}

// The gate under a flaky network: a Lease write whose answer is lost or held,
// a read held. Each ends (75) and its rerun finishes the job; before, a held
// request kept the gate waiting with no limit.
func TestClusterGateUnderFaults(t *testing.T) {
	c := newCluster(t)
	for i, tc := range []struct {
		action string
		rule   gfault
		want   int
	}{
		{"acquire", gfault{method: "POST", path: "/leases", action: "drop-after"}, 75},
		{"acquire", gfault{method: "POST", path: "/leases", action: "status-after", status: 502}, 75},
		{"acquire", gfault{method: "POST", path: "/leases", action: "hold"}, 75},
		{"acquire", gfault{method: "GET", path: "/leases/", action: "hold"}, 75},
		{"release", gfault{method: "DELETE", path: "/leases/", action: "drop-after"}, 75},
		{"release", gfault{method: "DELETE", path: "/leases/", action: "hold"}, 75},
	} {
		pr := c.pipelineRun(fmt.Sprintf("run-%d", i))
		if tc.action == "release" {
			c.mustRun(0, pr)
		}
		rule := tc.rule
		p, kc := newGProxy(c, &rule)
		c.identity = kc
		start := time.Now()
		done := make(chan stepRun, 1)
		go func() { done <- c.run(pr, nil, "--action", tc.action, "--timeout", "5s") }()
		var r stepRun
		select {
		case r = <-done:
		case <-time.After(3 * time.Minute): // forever is what failed
			t.Errorf("case %d %s %+v: gate still running after %s with --timeout 5s", i, tc.action, tc.rule, time.Since(start).Round(time.Second))
			p.srv.CloseClientConnections()
			r = <-done
		}
		t.Logf("case %d %s %v: exit %d in %s: %s (hits %v)", i, tc.action, tc.rule, r.code, time.Since(start).Round(time.Millisecond), r.summary.Error, p.hits)
		if r.code != tc.want {
			t.Errorf("case %d: exit %d, want %d", i, r.code, tc.want)
		}
		c.identity = ""
		// the rerun finishes the job
		r2 := c.run(pr, nil, "--action", tc.action, "--timeout", "5s")
		t.Logf("  rerun: exit %d: %s", r2.code, r2.summary.Error)
		if r2.code != 0 {
			t.Errorf("case %d: rerun exit %d: %s", i, r2.code, r2.summary.Error)
		}
		if tc.action == "acquire" {
			c.mustRun(0, pr, "--action", "release")
		}
	}
}

func contextWithFault(r *http.Request, f *gfault) context.Context {
	return context.WithValue(r.Context(), gkey{}, f)
}
