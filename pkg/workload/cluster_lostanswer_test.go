package workload

import (
	"encoding/pem"
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

// answerLosingProxy is an HTTPS proxy in front of the API server that, for the
// first PATCH of a chosen object, passes the request on and lets the API server
// make the change, then drops the connection instead of answering: what a client
// sees when the network breaks between the request and its answer.
type answerLosingProxy struct {
	srv     *httptest.Server
	mu      sync.Mutex
	path    string // URL path suffix of the object whose answer to lose
	hold    holdMode
	dropped int
}

// holdMode is what the proxy does to the PATCH whose answer it loses.
type holdMode int

const (
	dropAnswer   holdMode = iota // pass it on, drop the connection at the answer
	holdUnsent                   // never pass it on; answer nothing until the client gives up
	holdAnswered                 // pass it on; answer nothing until the client gives up
)

func newAnswerLosingProxy(c *cluster, pathSuffix string) *answerLosingProxy {
	return newHoldingProxy(c, pathSuffix, dropAnswer)
}

// newHoldingProxy is an answerLosingProxy that loses its answer as hold says.
func newHoldingProxy(c *cluster, pathSuffix string, hold holdMode) *answerLosingProxy {
	c.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	p := &answerLosingProxy{path: pathSuffix, hold: hold}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = transport
	rp.FlushInterval = -1 // watches stream
	rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		if p.hold == holdUnsent || r.Method != http.MethodPatch || !strings.HasSuffix(r.URL.Path, p.path) || resp.StatusCode >= 300 || !p.lose() {
			return nil
		}
		resp.Body.Close()
		if p.hold == holdAnswered {
			<-r.Context().Done()
		}
		panic(http.ErrAbortHandler) // the change is made; its answer never arrives
	}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.hold == holdUnsent && r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, p.path) && p.lose() {
			// The server notices the client going away only once the body is read.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		rp.ServeHTTP(w, r)
	}))
	c.t.Cleanup(p.srv.Close)
	return p
}

// lose reports whether this is the first answer to lose, and counts it: one only.
func (p *answerLosingProxy) lose() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dropped > 0 {
		return false
	}
	p.dropped++
	return true
}

func (p *answerLosingProxy) droppedAnswers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// kubeconfig reaches the API server through the proxy, which adds the admin's credentials.
func (p *answerLosingProxy) kubeconfig(c *cluster) string {
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

// A change the API server made but whose answer was lost is not a failure:
// the step retries with a fresh read, finds its change made, and reports and
// waits for it like any other. Before, scale-down exited 75 and scale-restore
// left the workload out of its results and its readiness wait.
func TestClusterLostAnswerToAChange(t *testing.T) {
	c := newCluster(t)
	c.deployment("lost", 2, appOpts{labels: map[string]string{"lost": "answer"}})
	c.deployment("other", 1, appOpts{labels: map[string]string{"lost": "answer"}})
	c.waitRunning("lost=answer", 3, 3*time.Minute)

	p := newAnswerLosingProxy(c, "/deployments/lost")
	r := c.mustRun(0, ScaleDownSpec(), p.kubeconfig(c), "--selector", "lost=answer", "--timeout", "2m")
	if p.droppedAnswers() != 1 {
		t.Fatalf("the proxy lost %d answers, want 1", p.droppedAnswers())
	}
	if got := r.results[ResultWorkloads]; got != `["deployment/lost=2","deployment/other=1"]` {
		t.Fatalf("scale-down workloads %s", got)
	}
	if d := c.getDeployment("lost"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationReplicas] != "2" {
		t.Fatalf("lost: replicas %d, record %q", *d.Spec.Replicas, d.Annotations[AnnotationReplicas])
	}
	if left := c.livePods("lost=answer"); len(left) > 0 {
		t.Fatalf("pods left %v", left)
	}
	if !strings.Contains(r.stderr, "retrying with a fresh read") {
		t.Errorf("no retry logged:\n%s", r.stderr)
	}

	p = newAnswerLosingProxy(c, "/deployments/lost")
	r = c.mustRun(0, ScaleRestoreSpec(), p.kubeconfig(c), "--selector", "lost=answer", "--wait-ready", "--ready-timeout", "2m")
	if p.droppedAnswers() != 1 {
		t.Fatalf("the proxy lost %d answers, want 1", p.droppedAnswers())
	}
	if got := r.results[ResultWorkloads]; got != `["deployment/lost=2","deployment/other=1"]` {
		t.Fatalf("scale-restore workloads %s", got)
	}
	if d := c.getDeployment("lost"); *d.Spec.Replicas != 2 || d.Status.ReadyReplicas != 2 || d.Annotations[AnnotationReplicas] != "" {
		t.Fatalf("lost after restore: replicas %d, ready %d, record %q", *d.Spec.Replicas, d.Status.ReadyReplicas, d.Annotations[AnnotationReplicas])
	}
}

// A restore whose change is still unanswered when --timeout runs out reads the
// workload once more to tell made from not made. Not made: the step fails
// transient (75) with the record kept, and its retry restores. Made: it is
// reported and waited for. Before, both failed permanent (exit 1, "may have
// been done": a stop CI met it when its API server was slow).
func TestClusterRestoreUnansweredAtTheDeadline(t *testing.T) {
	c := newCluster(t)
	c.deployment("slow", 1, appOpts{labels: map[string]string{"slow": "answer"}})
	c.waitRunning("slow=answer", 1, 3*time.Minute)

	for _, tc := range []struct {
		hold  holdMode
		want  int
		after int32 // replicas after the step
	}{
		{holdUnsent, 75, 0},
		{holdAnswered, 0, 1},
	} {
		c.mustRun(0, ScaleDownSpec(), "", "--selector", "slow=answer")
		p := newHoldingProxy(c, "/deployments/slow", tc.hold)
		r := c.mustRun(tc.want, ScaleRestoreSpec(), p.kubeconfig(c), "--selector", "slow=answer", "--timeout", "5s", "--wait-ready", "--ready-timeout", "2m")
		if p.droppedAnswers() == 0 {
			t.Fatalf("hold %d: the proxy held no change", tc.hold)
		}
		d := c.getDeployment("slow")
		if *d.Spec.Replicas != tc.after {
			t.Fatalf("hold %d: replicas %d, want %d", tc.hold, *d.Spec.Replicas, tc.after)
		}
		switch tc.want {
		case 75:
			if d.Annotations[AnnotationReplicas] != "1" {
				t.Fatalf("record lost: %v", d.Annotations)
			}
			c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "slow=answer", "--wait-ready", "--ready-timeout", "2m")
		case 0:
			if got := r.results[ResultWorkloads]; got != `["deployment/slow=1"]` || d.Status.ReadyReplicas != 1 {
				t.Fatalf("made: results %s, ready %d", got, d.Status.ReadyReplicas)
			}
		}
		c.waitRunning("slow=answer", 1, 3*time.Minute)
	}
}
