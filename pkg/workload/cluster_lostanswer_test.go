package workload

import (
	"encoding/pem"
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
	dropped int
}

func newAnswerLosingProxy(c *cluster, pathSuffix string) *answerLosingProxy {
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
	p := &answerLosingProxy{path: pathSuffix}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = transport
	rp.FlushInterval = -1 // watches stream
	rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		if r.Method != http.MethodPatch || !strings.HasSuffix(r.URL.Path, p.path) || resp.StatusCode >= 300 {
			return nil
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.dropped > 0 {
			return nil
		}
		p.dropped++
		resp.Body.Close()
		panic(http.ErrAbortHandler) // the change is made; its answer never arrives
	}
	p.srv = httptest.NewTLSServer(rp)
	c.t.Cleanup(p.srv.Close)
	return p
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
