package podaddr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultTimeout bounds one lookup, connection included: a message waits for it,
// so an API server that does not answer costs at most this.
const DefaultTimeout = 3 * time.Second

// ServiceAccountDir is where the kubelet (or a projected volume of the same shape)
// puts the pod's token, CA and namespace.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Finder looks pods up by IP in one namespace.
type Finder struct {
	BaseURL   string       // the API server, e.g. https://10.96.0.1:443
	HTTP      *http.Client // trusts the API server's CA; authenticates itself unless TokenFile is set
	TokenFile string       // bearer token, read at each lookup (projected tokens rotate)
	Namespace string
	Timeout   time.Duration // 0: DefaultTimeout
	// Unavailable, when set, says why no lookup can be made (not in a pod, no
	// token mounted); Describe then says so without trying.
	Unavailable string
}

// InCluster is the Finder of a step running in a pod: the API server from
// KUBERNETES_SERVICE_HOST/PORT, the token, CA and namespace from dir
// (ServiceAccountDir). It never fails: what is missing goes to Unavailable.
func InCluster(dir string) *Finder {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return &Finder{Unavailable: "not running in a Kubernetes pod (no KUBERNETES_SERVICE_HOST)"}
	}
	tokenFile := filepath.Join(dir, "token")
	if _, err := os.Stat(tokenFile); err != nil {
		return &Finder{Unavailable: "this pod has no ServiceAccount token (the step's automountServiceAccountToken is off, or its token volume is missing)"}
	}
	ns, err := os.ReadFile(filepath.Join(dir, "namespace"))
	if err != nil || strings.TrimSpace(string(ns)) == "" {
		return &Finder{Unavailable: "this pod's namespace is unknown (no namespace file beside its ServiceAccount token)"}
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	pool := x509.NewCertPool()
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		return &Finder{Unavailable: "the Kubernetes API's CA certificate is missing beside the ServiceAccount token"}
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext:         (&net.Dialer{Timeout: DefaultTimeout}).DialContext,
		TLSHandshakeTimeout: DefaultTimeout,
		Proxy:               nil, // the API server's service address is never proxied
	}
	return &Finder{
		BaseURL:   "https://" + net.JoinHostPort(host, port),
		HTTP:      &http.Client{Transport: tr},
		TokenFile: tokenFile,
		Namespace: strings.TrimSpace(string(ns)),
	}
}

// Describe says where a session with client address addr (pg_stat_activity's
// host(client_addr); "" for a Unix socket) comes from, for a message: the pod and
// its state, or what could not be told and why. started is the session's
// backend_start (zero: unknown): a pod created after it cannot have opened it.
// Describe never fails and returns within the timeout.
func (f *Finder) Describe(ctx context.Context, addr string, started time.Time) string {
	if addr == "" {
		return "connected over a Unix socket, on the database server's own host: no pod"
	}
	ip := net.ParseIP(addr)
	if ip == nil {
		return fmt.Sprintf("client address %q is not an IP address: pod not looked up", addr)
	}
	if ip.IsLoopback() {
		return fmt.Sprintf("connected from %s, on the database server's own host: no pod", addr)
	}
	if f == nil || f.Unavailable != "" {
		why := "no Kubernetes access"
		if f != nil {
			why = f.Unavailable
		}
		return fmt.Sprintf("connected from %s; its pod was not looked up: %s", addr, why)
	}
	pods, err := f.list(ctx, ip.String())
	if err != nil {
		return fmt.Sprintf("connected from %s; its pod could not be looked up: %s", addr, err)
	}
	return describe(addr, f.Namespace, pods, started)
}

// Pod is the little of a pod a message needs.
type Pod struct {
	Name        string
	Created     time.Time
	Deleting    bool
	Phase       string
	HostNetwork bool
}

// Explain is what Describe says once the API server listed pods, the pods of
// namespace ns whose IP is addr (for documentation and tests).
func Explain(addr, ns string, pods []Pod, started time.Time) string {
	return describe(addr, ns, pods, started)
}

func describe(addr, ns string, pods []Pod, started time.Time) string {
	var own, host []Pod
	for _, p := range pods {
		if p.HostNetwork {
			host = append(host, p)
		} else {
			own = append(own, p)
		}
	}
	switch {
	case len(own) == 0 && len(host) > 0:
		return fmt.Sprintf("connected from %s, a node's address (its pods with host networking, e.g. %s, share it, and a node may masquerade its pods' traffic): the pod cannot be told", addr, host[0].Name)
	case len(own) == 0:
		return fmt.Sprintf("connected from %s, and no pod in namespace %s has that address: the pod that opened the session no longer exists (or it runs in another namespace or outside the cluster, or the session comes through a proxy or pooler)", addr, ns)
	}
	// A pod created after the session began cannot have opened it: its IP was
	// given again after the pod that did was gone. A minute of slack covers clock
	// differences between the database server and the API server.
	var live []Pod
	var later []string
	for _, p := range own {
		if !started.IsZero() && !p.Created.IsZero() && p.Created.After(started.Add(time.Minute)) {
			later = append(later, p.Name)
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return fmt.Sprintf("connected from %s, which now belongs to pod %s (namespace %s), created after that session began: the pod that opened the session no longer exists", addr, strings.Join(later, ", "), ns)
	}
	names := make([]string, len(live))
	for i, p := range live {
		names[i] = podState(p)
	}
	what := "pod"
	if len(live) > 1 {
		what = "one of the pods"
	}
	return fmt.Sprintf("connected from %s, %s %s (namespace %s)", addr, what, strings.Join(names, ", "), ns)
}

func podState(p Pod) string {
	switch {
	case p.Deleting:
		return p.Name + " (being deleted)"
	case p.Phase == "Succeeded" || p.Phase == "Failed":
		return fmt.Sprintf("%s (%s: its containers have stopped, so the session is left over)", p.Name, p.Phase)
	case p.Phase != "" && p.Phase != "Running":
		return fmt.Sprintf("%s (%s)", p.Name, p.Phase)
	}
	return p.Name
}

// list asks the API server for the pods of the namespace with that IP.
func (f *Finder) list(ctx context.Context, ip string) ([]Pod, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	late := func() error {
		if parent.Err() != nil {
			return errors.New("the lookup was stopped before the Kubernetes API answered")
		}
		return fmt.Errorf("the Kubernetes API did not answer within %s", timeout)
	}
	q := url.Values{"fieldSelector": {"status.podIP=" + ip}, "limit": {"50"}}
	u := strings.TrimSuffix(f.BaseURL, "/") + "/api/v1/namespaces/" + url.PathEscape(f.Namespace) + "/pods?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, errors.New("the Kubernetes API address is not valid")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "chartreuse-migrate (holder pod lookup)")
	if f.TokenFile != "" {
		tok, err := os.ReadFile(f.TokenFile)
		if err != nil {
			return nil, errors.New("the ServiceAccount token cannot be read")
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := f.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, late()
		}
		// Never the URL's query or any header: the transport's own words only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("the Kubernetes API cannot be reached: %v", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, errors.New("the Kubernetes API refused this pod's ServiceAccount token (401)")
	case http.StatusForbidden:
		return nil, fmt.Errorf("this step's ServiceAccount may not list pods in namespace %s (403): bind it the Role chartreuse-migrate (rbac.yaml) to see the pod", f.Namespace)
	default:
		return nil, fmt.Errorf("the Kubernetes API answered %s", resp.Status)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string     `json:"name"`
				CreationTimestamp time.Time  `json:"creationTimestamp"`
				DeletionTimestamp *time.Time `json:"deletionTimestamp"`
			} `json:"metadata"`
			Spec struct {
				HostNetwork bool `json:"hostNetwork"`
			} `json:"spec"`
			Status struct {
				Phase string `json:"phase"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
		if ctx.Err() != nil {
			return nil, late()
		}
		return nil, errors.New("the Kubernetes API's answer could not be read")
	}
	pods := make([]Pod, 0, len(list.Items))
	for _, it := range list.Items {
		pods = append(pods, Pod{Name: it.Metadata.Name, Created: it.Metadata.CreationTimestamp,
			Deleting: it.Metadata.DeletionTimestamp != nil, Phase: it.Status.Phase, HostNetwork: it.Spec.HostNetwork})
	}
	slices.SortFunc(pods, func(a, b Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods, nil
}
