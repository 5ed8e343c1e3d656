package patroni

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// LeaderFinder reports the name of the cluster's running leader.
type LeaderFinder interface {
	Leader(ctx context.Context) (string, error)
}

// REST asks Patroni's REST API for the leader.
type REST struct {
	base   *url.URL
	client *http.Client
}

// RequestTimeout bounds one REST call: a hung API must not eat the whole wait.
const RequestTimeout = 2 * time.Second

// NewREST returns a client for the API at base (e.g. http://db-0.db:8008).
func NewREST(base string, client *http.Client) (*REST, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, failure.Usagef("--patroni-url is not valid: %v", err)
	}
	if client == nil {
		client = &http.Client{Timeout: RequestTimeout}
	}
	c := *client
	// Patroni never redirects: a redirect means --patroni-url reaches something
	// else (a login page, another cluster's API), whose leader must not be taken.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &REST{base: u, client: &c}, nil
}

type member struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	State string `json:"state"`
}

// Leader implements LeaderFinder with GET /cluster. Every failure is transient:
// an API that is down, answers an error or reports no running leader may be
// fine a moment later (a member starting, a failover in progress).
func (r *REST) Leader(ctx context.Context) (string, error) {
	u := r.base.JoinPath("cluster")
	shown := u.Redacted()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", failure.Permanentf("GET %s: %w", shown, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in our message already
		}
		// No wait makes a certificate trusted or valid.
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) {
			return "", failure.Permanentf("Patroni REST API at %s: its TLS certificate failed verification (%v): the step trusts the system's CAs; give it the CA with SSL_CERT_FILE, or fix the certificate (not retried)", shown, cve.Err)
		}
		// Connected (or still connecting) but no answer in time: Patroni serves
		// /cluster from its DCS, so a hung etcd hangs the API, which "unreachable"
		// hid.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			return "", failure.Transientf("Patroni REST API did not answer GET %s within %s (Patroni reads /cluster from its DCS: a hung etcd, Consul or Kubernetes API hangs it too): %w", shown, r.client.Timeout, err)
		}
		return "", failure.Transientf("Patroni REST API unreachable (GET %s): %w", shown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", failure.Transientf("Patroni REST API: reading GET %s: %w", shown, err)
	}
	switch code := resp.StatusCode; {
	case code >= 300 && code < 400:
		to := "nowhere"
		if loc, err := resp.Location(); err == nil {
			to = loc.Scheme + "://" + loc.Host // the rest may hold tokens
		}
		return "", failure.Permanentf("GET %s answered %s, a redirect to %s: Patroni never redirects, so --patroni-url is not Patroni's own API; give its address, e.g. http://db-0.db:8008 (not retried)", shown, resp.Status, to)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		// Patroni checks credentials only on requests that change something.
		return "", failure.Permanentf("GET %s was refused with %s: Patroni lets anyone read /cluster, so something in front of it asks for credentials; give Patroni's own address, or credentials it accepts in --patroni-url (not retried)", shown, resp.Status)
	}
	var cluster struct {
		Members *[]member `json:"members"`
		// Every other GET answer of Patroni's (member status, health checks)
		// carries {"patroni": {"version", "scope"}}; /cluster's does not.
		Patroni json.RawMessage `json:"patroni"`
	}
	jsonErr := json.Unmarshal(body, &cluster)
	// Patroni routes a GET by the path's first segment and answers any path it
	// does not know with a health check: with a path in --patroni-url (the
	// member's api_url, .../patroni, or a proxy prefix) /cluster is never
	// reached, whatever the status says, and no wait changes that.
	if jsonErr == nil && cluster.Members == nil && (resp.StatusCode == http.StatusOK || cluster.Patroni != nil) {
		return "", failure.Permanentf("GET %s did not reach Patroni's cluster view (the answer lists no members): give the REST API's base URL without a path, e.g. http://db-0.db:8008 (not retried)", shown)
	}
	if resp.StatusCode != http.StatusOK {
		return "", failure.Transientf("Patroni REST API answered GET %s with %s", shown, resp.Status)
	}
	if jsonErr != nil {
		return "", failure.Transientf("Patroni REST API: GET %s did not return the cluster as JSON (is --patroni-url Patroni's API?): %v", shown, jsonErr)
	}
	for _, m := range *cluster.Members {
		// A standby cluster's "standby_leader" replicates from elsewhere: no
		// migration can run there.
		if m.Role == "leader" && m.State == "running" {
			return printable(m.Name), nil
		}
	}
	return "", failure.Transientf("Patroni reports no running leader (members: %s)", describeMembers(*cluster.Members))
}

// shownMembers bounds the member list in a message: a real cluster has a few,
// and the message is logged every 10 s and written to the results.
const shownMembers = 10

func describeMembers(ms []member) string {
	if len(ms) == 0 {
		return "none"
	}
	parts := make([]string, 0, min(len(ms), shownMembers)+1)
	for _, m := range ms[:min(len(ms), shownMembers)] {
		parts = append(parts, fmt.Sprintf("%s %s %s", printable(m.Name), printable(m.Role), printable(m.State)))
	}
	if len(ms) > shownMembers {
		parts = append(parts, fmt.Sprintf("and %d more", len(ms)-shownMembers))
	}
	return strings.Join(parts, ", ")
}

// printable quotes a name from the API that holds control characters: it goes
// into log lines and result files, where a newline would forge another line.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
