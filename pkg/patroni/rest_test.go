package patroni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

func TestRESTLeader(t *testing.T) {
	var many []string
	for i := range 5000 {
		many = append(many, fmt.Sprintf(`{"name":"db-%d","role":"replica","state":"streaming"}`, i))
	}
	tests := []struct {
		name   string
		status int
		body   string
		leader string
		err    string
	}{
		{"running leader", 200, `{"members":[{"name":"db-1","role":"replica","state":"streaming"},{"name":"db-0","role":"leader","state":"running","timeline":3}]}`, "db-0", ""},
		{"standby leader is not enough", 200, `{"members":[{"name":"db-0","role":"standby_leader","state":"running"}]}`, "", "Patroni reports no running leader (members: db-0 standby_leader running)"},
		{"leader still starting", 200, `{"members":[{"name":"db-0","role":"leader","state":"starting"}]}`, "", "Patroni reports no running leader (members: db-0 leader starting)"},
		{"no members", 200, `{"members":[]}`, "", "Patroni reports no running leader (members: none)"},
		{"API error", 503, `{}`, "", "answered GET"},
		{"not Patroni", 200, `<html>hello</html>`, "", "did not return the cluster as JSON"},
		// A hostile API's names must not forge log lines or result files.
		{"leader name with a newline", 200, `{"members":[{"name":"db-0\nlevel=ERROR msg=forged","role":"leader","state":"running"}]}`, `"db-0\nlevel=ERROR msg=forged"`, ""},
		// Nor one message fill the log every 10 s.
		{"thousands of members", 200, `{"members":[` + strings.Join(many, ",") + `]}`, "", "db-9 replica streaming, and 4990 more)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/cluster" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			rest, err := NewREST(srv.URL+"/", nil) // a trailing slash must not matter
			if err != nil {
				t.Fatal(err)
			}
			leader, err := rest.Leader(context.Background())
			if tt.err == "" {
				if err != nil || leader != tt.leader {
					t.Fatalf("leader %q, err %v; want %q", leader, err, tt.leader)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
			if failure.Code(err) != 75 {
				t.Errorf("code %d, want 75: waiting may fix it", failure.Code(err))
			}
		})
	}
}

func TestRESTUnreachableOrHung(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()

	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)

	for name, tt := range map[string]struct{ base, want string }{
		"closed port": {"http://127.0.0.1:" + strconv.Itoa(closed), "Patroni REST API unreachable (GET %s/cluster)"},
		"hung API":    {hung.URL, "Patroni REST API did not answer GET %s/cluster within 200ms (Patroni reads /cluster from its DCS"},
	} {
		t.Run(name, func(t *testing.T) {
			rest, _ := NewREST(tt.base, &http.Client{Timeout: 200 * time.Millisecond})
			_, err := rest.Leader(context.Background())
			if failure.Code(err) != 75 || !strings.Contains(err.Error(), fmt.Sprintf(tt.want, tt.base)) {
				t.Fatalf("err %v (code %d)", err, failure.Code(err))
			}
		})
	}
}

func TestRESTHidesURLPassword(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "s3cr@t" {
			t.Errorf("basic auth not sent from the URL: %q %q", u, p)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	rest, _ := NewREST(strings.Replace(srv.URL, "http://", "http://admin:s3cr%40t@", 1), nil)
	_, err := rest.Leader(context.Background())
	if err == nil || strings.Contains(err.Error(), "s3cr") {
		t.Fatalf("err %v", err)
	}
}

type fakeLeader struct{ err error }

func (f fakeLeader) Leader(context.Context) (string, error) { return "db-0", f.err }

func TestNoDatabaseCheckWithoutALeader(t *testing.T) {
	connected := false
	c := &Checker{
		Patroni: fakeLeader{err: failure.Transientf("Patroni reports no running leader (members: none)")},
		Connect: func(context.Context, *pgx.ConnConfig) (*pgx.Conn, error) {
			connected = true
			return nil, errors.New("unreachable")
		},
	}
	if _, err := c.Check(context.Background()); failure.Code(err) != 75 || connected {
		t.Fatalf("err %v, connected %v", err, connected)
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("r", 64)
	tests := []struct {
		name string
		opts Options
		flag string // "" = valid
	}{
		{"defaults", Options{Timeout: time.Minute}, ""},
		{"zero timeout", Options{Timeout: 0}, "--timeout"},
		{"negative timeout", Options{Timeout: -time.Second}, "--timeout"},
		{"absurd timeout", Options{Timeout: 100 * time.Hour}, "--timeout"},
		{"patroni url", Options{Timeout: time.Minute, PatroniURL: "http://db-0.db:8008"}, ""},
		{"patroni url without scheme", Options{Timeout: time.Minute, PatroniURL: "db-0.db:8008"}, "--patroni-url"},
		{"patroni url ftp", Options{Timeout: time.Minute, PatroniURL: "ftp://db"}, "--patroni-url"},
		{"patroni url with a query", Options{Timeout: time.Minute, PatroniURL: "http://db-0.db:8008/?token=t0k3n"}, "--patroni-url has a query"},
		{"patroni url with an empty query", Options{Timeout: time.Minute, PatroniURL: "http://db-0.db:8008?"}, "--patroni-url has a query"},
		{"patroni url with a fragment", Options{Timeout: time.Minute, PatroniURL: "http://db-0.db:8008#t0k3n"}, "--patroni-url has a query"},
		{"blank role", Options{Timeout: time.Minute, Roles: Roles{Writer: " "}}, "--writer-role"},
		{"long role", Options{Timeout: time.Minute, Roles: Roles{Reader: long}}, "--reader-role"},
		{"role not UTF-8", Options{Timeout: time.Minute, Roles: Roles{Owner: "app\xff"}}, "--owner-role \"app\\xff\" is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.flag == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.flag) {
				t.Fatalf("err %v, want one naming %s", err, tt.flag)
			}
			if strings.Contains(err.Error(), "t0k3n") {
				t.Errorf("the error quotes the URL's token: %v", err)
			}
		})
	}
}

func TestDefaultRoles(t *testing.T) {
	got := Roles{Writer: "w"}.withDefaults("app")
	if got != (Roles{Owner: "app_owner", Writer: "w", Reader: "app_reader"}) {
		t.Errorf("%+v", got)
	}
	// PostgreSQL keeps 63 bytes of a name, cut at a character boundary.
	if got := (Roles{}).withDefaults(strings.Repeat("é", 31)).Owner; got != strings.Repeat("é", 31)+"_" {
		t.Errorf("truncated owner %q (%d bytes)", got, len(got))
	}
	if got := (Roles{}).withDefaults("ab" + strings.Repeat("é", 31)).Owner; got != "ab"+strings.Repeat("é", 30) {
		t.Errorf("truncated owner %q (%d bytes)", got, len(got))
	}
}

// TestRESTAnswersNoWaitChanges: answers from something that is not Patroni's API
// itself, or that no wait makes acceptable, end the step at once with exit 1,
// and the password in --patroni-url is neither printed nor sent elsewhere.
func TestRESTAnswersNoWaitChanges(t *testing.T) {
	elsewhere := make(chan string, 10)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case elsewhere <- r.URL.Path:
		default:
		}
		_, _ = w.Write([]byte(`{"members":[{"name":"other-0","role":"leader","state":"running"}]}`))
	}))
	defer other.Close()
	handler := func(status int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch status {
			case http.StatusFound:
				http.Redirect(w, r, other.URL+"/cluster?token=abc", status)
			case http.StatusOK:
				_, _ = w.Write([]byte(`{"members":[{"name":"db-0","role":"leader","state":"running"}]}`))
			default:
				w.Header().Set("WWW-Authenticate", `Basic realm="proxy"`)
				w.WriteHeader(status)
			}
		})
	}
	tests := []struct {
		name string
		srv  *httptest.Server
		want string
	}{
		{"proxy wants credentials", httptest.NewServer(handler(http.StatusUnauthorized)), "was refused with 401 Unauthorized: Patroni lets anyone read /cluster"},
		{"proxy forbids", httptest.NewServer(handler(http.StatusForbidden)), "was refused with 403 Forbidden"},
		{"redirect to another host", httptest.NewServer(handler(http.StatusFound)), "answered 302 Found, a redirect to " + other.URL + ": Patroni never redirects"},
		{"untrusted TLS certificate", httptest.NewTLSServer(handler(http.StatusOK)), "its TLS certificate failed verification (x509: certificate signed by unknown authority)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer tt.srv.Close()
			u, err := url.Parse(tt.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			u.User = url.UserPassword("admin", loginPassword)
			o, err := run(Spec(), "--database-url", pgenv.ClosedURL(t), "--patroni-url", u.String(), "--timeout", "5s")
			if err != nil {
				t.Fatal(err)
			}
			if o.code != 1 || o.attempts(t) != 1 || !strings.Contains(o.summary.Error, tt.want) {
				t.Fatalf("code %d, attempts %s, error %s\nwant exit 1 at once, saying %q", o.code, o.summary.Results["attempts"], o.summary.Error, tt.want)
			}
			if !strings.Contains(o.summary.Error, "(not retried)") {
				t.Errorf("error does not say it is not retried: %s", o.summary.Error)
			}
		})
	}
	select {
	case p := <-elsewhere:
		t.Errorf("the redirect was followed to %s", p)
	default:
	}
}

// A token in --patroni-url's query was sent and printed with the URL (found by
// an attack): the step now refuses the URL (exit 2) before any request, and
// prints nothing of it.
func TestPatroniURLQueryRefusedUnprinted(t *testing.T) {
	o, err := run(Spec(), "--database-url", pgenv.ClosedURL(t), "--patroni-url", "http://127.0.0.1:1/?token=t0k3n", "--timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	if o.code != 2 || !strings.Contains(o.summary.Error, "--patroni-url has a query or fragment") {
		t.Fatalf("code %d, error %s; want 2 naming the query", o.code, o.summary.Error)
	}
	if strings.Contains(o.stdout+o.stderr, "t0k3n") {
		t.Errorf("the token is printed:\n%s%s", o.stdout, o.stderr)
	}
}
