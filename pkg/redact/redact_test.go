package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// Passwords with every character that broke the original's URL building.
var hardPasswords = []string{
	"simple-pass",
	"p@ss:w/rd%41?x",
	"a@b@c",
	"sl/ash:colon",
	"per%cent%2F",
	"q?uery&x=1#frag",
	"sp ace'quote\"",
}

func TestRegisteredSecretsAreMaskedInEveryForm(t *testing.T) {
	for _, pw := range hardPasswords {
		t.Run(pw, func(t *testing.T) {
			r := New()
			r.Add(pw)
			u := url.URL{Scheme: "postgres", User: url.UserPassword("app", pw), Host: "db:5432", Path: "/app"}
			texts := []string{
				pw,
				"connecting with " + u.String() + " failed",
				"password=" + pw,
				"escaped " + url.QueryEscape(pw),
				fmt.Sprintf("%q", "x"+pw+"y"),
			}
			for _, text := range texts {
				got := r.String(text)
				if strings.Contains(got, pw) || strings.Contains(got, url.QueryEscape(pw)) || strings.Contains(got, url.PathEscape(pw)) {
					t.Errorf("String(%q) = %q still holds the password", text, got)
				}
			}
		})
	}
}

func TestUnregisteredURLAndDSNPasswordsAreMasked(t *testing.T) {
	r := New()
	tests := []struct{ in, want string }{
		{"dial postgres://app:s3cret@db:5432/app failed", "dial postgres://app:xxxxx@db:5432/app failed"},
		{"postgresql://app:p@ss:w/rd@db/app", "postgresql://app:xxxxx@db/app"},
		{"host=db password=s3cret user=app", "host=db password=xxxxx user=app"},
		{"host=db password='se cret' user=app", "host=db password=xxxxx user=app"},
		{"PGPASSWORD=s3cret", "PGPASSWORD=xxxxx"},
		// An unescaped '/' ends the authority for a URL parser, not for the pattern:
		// a leading '/', digits then '/' (a Patroni URL that the step prints).
		{"postgres://bob:/Tr0ub4dor@db:5432/app", "postgres://bob:xxxxx@db:5432/app"},
		{"GET http://patroni:8008/se/cret@db-0:8008/cluster: refused", "GET http://patroni:xxxxx@db-0:8008/cluster: refused"},
		{"host=db password='it\\'s a pw' user=app", "host=db password=xxxxx user=app"},
		{"postgres://app@db/app (no password)", "postgres://app@db/app (no password)"},
		{"nothing secret here", "nothing secret here"},
	}
	for _, tt := range tests {
		if got := r.String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHandlerMasksMessagesAndAttributes(t *testing.T) {
	const pw = "p@ss:w/rd%41?x"
	r := New()
	r.Add(pw)
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		var h slog.Handler = slog.NewTextHandler(&buf, nil)
		if format == "json" {
			h = slog.NewJSONHandler(&buf, nil)
		}
		log := slog.New(r.Handler(h)).With("dsn", "postgres://u:"+url.QueryEscape(pw)+"@h/d")
		log.Info("using "+pw,
			"err", errors.New("auth failed for "+pw),
			slog.Group("g", "pw", pw),
			"list", []string{pw},
		)
		if strings.Contains(buf.String(), pw) || strings.Contains(buf.String(), url.QueryEscape(pw)) {
			t.Errorf("%s log leaks the password: %s", format, buf.String())
		}
		if !strings.Contains(buf.String(), Mask) {
			t.Errorf("%s log has no mask: %s", format, buf.String())
		}
	}
}

// TestAddURLPassword: the password of a URL is masked wherever it appears alone,
// as written and unescaped, for the database URL and the Patroni URL alike, even
// when an unescaped '@' or '/' would make a parser read another password.
func TestAddURLPassword(t *testing.T) {
	tests := []struct {
		name, url string
		masked    []string // each must read as Mask alone
	}{
		{"plain", "postgres://app:s3cret@db:5432/app", []string{"s3cret"}},
		{"escaped", "postgres://app:p%40ss%2Fw@db/app", []string{"p%40ss%2Fw", "p@ss/w"}},
		{"unescaped at and slash", "postgres://app:p@ss/w@db/app", []string{"p@ss/w"}},
		{"patroni", "http://patroni:rest-pw@db-0:8008", []string{"rest-pw"}},
		{"at in the query", "http://patroni:rest-pw@db-0:8008/?x=a@b", []string{"rest-pw", "rest-pw@db-0:8008/?x=a"}},
		{"malformed escape", "postgres://app:100%zz@db/app", []string{"100%zz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			r.AddURLPassword(tt.url)
			for _, pw := range tt.masked {
				if got := r.String(pw); got != Mask {
					t.Errorf("String(%q) = %q, want %q", pw, got, Mask)
				}
			}
		})
	}
	for _, raw := range []string{"", "postgres://app@db/app", "host=db password=x", "postgres://db/app"} {
		r := New()
		r.AddURLPassword(raw)
		if len(r.secrets) != 0 {
			t.Errorf("AddURLPassword(%q) registered %q", raw, r.secrets)
		}
	}
}

// TestForms: each spelling once, none empty.
func TestForms(t *testing.T) {
	tests := []struct {
		secret string
		want   []string
	}{
		{"", nil},
		{"plain", []string{"plain"}},
		{"a b/c", []string{"a b/c", "a+b%2Fc", "a%20b%2Fc"}},
		{"p@ss:w", []string{"p@ss:w", "p%40ss%3Aw"}}, // the path form is the raw one, the userinfo form the query one
	}
	for _, tt := range tests {
		if got := Forms(tt.secret); !slices.Equal(got, tt.want) {
			t.Errorf("Forms(%q) = %q, want %q", tt.secret, got, tt.want)
		}
	}
}

// PostgreSQL hands a secret back changed: an unquoted identifier lower-cased
// and cut to 63 bytes, a JSON document quoted up to where its parser stopped.
// Found by an attack (session 28): each leaked before.
func TestFoldedAndCutSecretsAreMasked(t *testing.T) {
	long := "Zq9Kx7Wm3Vb5Np1Rt8Ys4Lc6Hd2Gf0JjQwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUiOpAsDfGhJk"
	tests := []struct{ name, secret, in, want string }{
		{"lower-cased identifier", "SkLiveAbCdEfGh12345", `column "skliveabcdefgh12345" does not exist`, `column "xxxxx" does not exist`},
		{"upper-cased", "SkLiveAbCdEfGh12345", "SKLIVEABCDEFGH12345", "xxxxx"},
		{"cut to 63 bytes", long, `column "` + strings.ToLower(long[:63]) + `" does not exist`, `column "xxxxx" does not exist`},
		{"a JSON document's context", `Pr3fixPartOfKey\qSuffixPartOfKey`, `context: JSON data, line 1: {"api_key": "Pr3fixPartOfKey\q...`, `context: JSON data, line 1: {"api_key": "xxxxx...`},
		{"inside a word", "SkLiveAbCdEfGh12345", `column "prefix_skliveabcdefgh12345_suffix"`, `column "prefix_xxxxx_suffix"`},
		{"short secret, folded", "Pw42", `column "pw42" does not exist`, `column "xxxxx" does not exist`},
		{"twice, adjacent", "SkLiveAbCdEfGh12345", "skliveabcdefgh12345SKLIVEABCDEFGH12345!", "xxxxx!"},
		{"a beginning shorter than minPrefix stays", "SkLiveAbCdEfGh12345", "sklivea is a word", "sklivea is a word"},
		{"unrelated text stays", "SkLiveAbCdEfGh12345", `relation "orders" does not exist`, `relation "orders" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			r.Add(tt.secret)
			if got := r.String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
