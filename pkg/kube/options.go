package kube

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Client-side rate limits. client-go's defaults (5 requests/s, burst 10) would make
// stopping 200 workloads take 80 s. The steps make about one request per workload,
// 16 at a time, so the burst covers a large namespace in one go; the API server's
// priority and fairness, not this limiter, is what protects it.
const (
	DefaultQPS   = 200
	DefaultBurst = 400
)

// Options are the flags that say which cluster and namespace a step works in.
type Options struct {
	Kubeconfig string
	Context    string
	Namespace  string
}

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "kubeconfig", Usage: "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the pod's service account in a cluster)", Destination: &o.Kubeconfig},
		&cli.StringFlag{Name: "context", Usage: "kubeconfig context to use (default: the current context)", Destination: &o.Context},
		&cli.StringFlag{Name: "namespace", Usage: "namespace of the workloads (default: the pod's own namespace in a cluster, else the kubeconfig context's)", Destination: &o.Namespace},
	}
}

// Validate implements step.Options.
func (o *Options) Validate() error {
	if o.Namespace != "" {
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			return failure.Usagef("--namespace %q is not a valid namespace name: %s", o.Namespace, strings.Join(errs, "; "))
		}
	}
	return nil
}

// Client is a connection to one cluster, bound to one namespace.
type Client struct {
	Interface kubernetes.Interface
	Config    *rest.Config
	Namespace string
}

// clientConfig loads the kubeconfig the usual way: --kubeconfig, else $KUBECONFIG,
// else ~/.kube/config, else the in-cluster service account.
func (o *Options) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	if o.Namespace != "" {
		overrides.Context.Namespace = o.Namespace
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// Connect builds the client. It does not contact the server.
func (o *Options) Connect(userAgent string) (*Client, error) {
	cc := o.clientConfig()
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, failure.Permanentf("no Kubernetes configuration: not running in a pod and no kubeconfig found; pass --kubeconfig or set KUBECONFIG")
		}
		return nil, failure.Permanentf("loading Kubernetes configuration: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, failure.Permanentf("finding the namespace: %w; pass --namespace", err)
	}
	if ns == "" {
		ns = "default"
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.RateLimiter == nil {
		cfg.RateLimiter = deadlineLimiter{flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)}
	}
	if userAgent != "" {
		cfg.UserAgent = userAgent
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return boundedRequests{rt} })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, failure.Permanentf("creating Kubernetes client: %w", err)
	}
	return &Client{Interface: cs, Config: cfg, Namespace: ns}, nil
}

// String names the client's server and namespace for logs.
func (c *Client) String() string {
	return fmt.Sprintf("%s namespace %s", c.Config.Host, c.Namespace)
}

// RequestTimeout bounds one request other than a watch, its answer read whole:
// the API server ends its own requests after 60 s (504), but a proxy or load
// balancer before it may never answer, and a step whose context has no deadline
// then waited forever. It ends as a broken connection does (unreachable), so a
// change is retried with a fresh read, and a step's --timeout still ends first
// when it is shorter.
const RequestTimeout = 30 * time.Second

// boundedRequests gives every request but a watch RequestTimeout.
type boundedRequests struct{ rt http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (b boundedRequests) RoundTrip(req *http.Request) (*http.Response, error) {
	if q := req.URL.Query().Get("watch"); q == "true" || q == "1" {
		return b.rt.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), RequestTimeout)
	resp, err := b.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// WrappedRoundTripper lets client-go see the transport inside.
func (b boundedRequests) WrappedRoundTripper() http.RoundTripper { return b.rt }

// cancelOnClose ends a bounded request's context once its answer is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// deadlineLimiter is client-go's token bucket, except that a wait its context's
// deadline would cut short lasts until that deadline and ends with the context's
// error. The bucket refuses such a wait at once with an error of its own that
// wraps nothing, so a step interrupted or out of time (--timeout) a few
// milliseconds before its deadline failed as if for good (exit 1) instead of
// transiently (75).
type deadlineLimiter struct{ flowcontrol.RateLimiter }

// Wait implements flowcontrol.RateLimiter.
func (l deadlineLimiter) Wait(ctx context.Context) error {
	err := l.RateLimiter.Wait(ctx)
	if _, ok := ctx.Deadline(); err != nil && ok && ctx.Err() == nil {
		<-ctx.Done()
		return fmt.Errorf("client rate limiter: %w", ctx.Err())
	}
	return err
}
