package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// A masked secret turns into Mask ("xxxxx"), so a secret that itself contains the
// mask's character can re-form from the mask and the text around it ("ax" in
// "a"+"ax" gives "axxxxx") without anything being revealed. The properties below
// therefore use secrets without that character; every other secret must vanish.
func maskable(secret string) bool {
	return secret != "" && !strings.ContainsAny(secret, Mask)
}

// FuzzRegisteredSecretNeverSurvives: a registered secret (or its URL-escaped forms)
// never survives String(), whatever text surrounds it, and never reaches a log line
// through the redacting handler, as message, attribute, error or group member.
func FuzzRegisteredSecretNeverSurvives(f *testing.F) {
	for _, s := range []struct{ secret, before, after string }{
		{"simple-pass", "connecting as app:", "@db failed"},
		{"p@ss:w/rd%41?y", "postgres://app:", "@db:5432/app"},
		{"a@b@c", "", ""},
		{"sp ace'quote\"", "password='", "'"},
		{"per%cent%2F", "url=", " end"},
		{"q?uery&k=1#frag", "?", "#"},
		{"ünïcødé", "«", "»"},
		{"\n\t", "line", "line"},
		{"aa", "a", "a"},
		{"password", "password=", ""},
	} {
		f.Add(s.secret, s.before, s.after)
	}
	f.Fuzz(func(t *testing.T, secret, before, after string) {
		if !maskable(secret) {
			t.Skip()
		}
		r := New()
		r.Add(secret)
		for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), url.UserPassword("u", secret).String()[2:]} {
			if !maskable(form) {
				continue
			}
			got := r.String(before + form + after)
			if strings.Contains(got, form) {
				t.Fatalf("String(%q) = %q still holds the registered secret (form %q)", before+form+after, got, form)
			}
		}

		var buf bytes.Buffer
		log := slog.New(r.Handler(slog.NewJSONHandler(&buf, nil))).With("ctx", before+secret+after)
		log.Info(before+secret+after,
			"attr", before+secret+after,
			"err", errors.New(before+secret+after),
			slog.Group("g", "inner", before+secret+after),
			"list", []string{before, secret, after})
		var rec map[string]any
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", buf.String())
		}
		// Compare decoded values: the JSON encoder escapes some characters.
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch v := v.(type) {
			case string:
				if strings.Contains(v, secret) {
					t.Fatalf("log field %s = %q holds the secret %q", path, v, secret)
				}
			case map[string]any:
				for k, x := range v {
					if path == "" && (k == "time" || k == "level") {
						continue // written by slog, not from the record
					}
					walk(path+"."+k, x)
				}
			}
		}
		walk("", rec)
	})
}

// FuzzURLPasswordMaskedWithoutRegistration: the password of any URL that
// net/url renders is masked even when nobody registered it, and nothing else of
// the URL changes (exact output).
func FuzzURLPasswordMaskedWithoutRegistration(f *testing.F) {
	f.Add("postgres", "app", "p@ss:w/rd%41?y", "db:5432", "/app")
	f.Add("postgresql", "app_owner_user", "a b", "10.0.0.1", "/db")
	f.Add("http", "user", "", "host", "")
	f.Add("postgres", "ü", "ünïcødé", "h", "/p")
	f.Fuzz(func(t *testing.T, scheme, user, password, host, path string) {
		u := &url.URL{Scheme: scheme, User: url.UserPassword(user, password), Host: host, Path: path}
		raw := u.String()
		// The cases the redactor promises to cover: a well-formed scheme, a user
		// without separators, and a URL that is one whitespace-free token.
		if !validScheme(scheme) || user == "" || strings.ContainsAny(u.User.Username(), ":/@") ||
			strings.ContainsAny(raw, " \t\n\r\v\f\u0085\u00a0") || password == "" {
			t.Skip()
		}
		userinfo := u.User.String() // user:escaped-password
		head := scheme + "://" + userinfo + "@"
		if !strings.HasPrefix(raw, head) {
			t.Skip() // net/url rendered something else (e.g. opaque form)
		}
		escUser, _, _ := strings.Cut(userinfo, ":")
		rest := raw[len(head)-1:] // "@host/path"
		if strings.ContainsAny(escUser, ":/@") || strings.Contains(rest[1:], "@") {
			t.Skip() // an '@' after the userinfo: the mask covers up to the last '@' on purpose
		}
		prefix := scheme + "://" + escUser + ":"
		want := prefix + Mask + rest
		if got := New().String(raw); got != want {
			t.Fatalf("String(%q) = %q, want %q", raw, got, want)
		}
	})
}

func validScheme(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '+' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// FuzzKeywordValuePassword: password=... in libpq keyword/value strings is masked
// without registration, quoted or not.
func FuzzKeywordValuePassword(f *testing.F) {
	f.Add("hunter2", false)
	f.Add("sp ace", true)
	f.Add("it''s", true)
	f.Fuzz(func(t *testing.T, password string, quoted bool) {
		if !maskable(password) || strings.ContainsAny(password, "\\'\" \t\n\r\v\f,;\u0085\u00a0=") && !quoted {
			t.Skip()
		}
		if strings.ContainsAny(password, "\\'") {
			t.Skip() // quoting rules of libpq differ from the regexp's escape handling
		}
		val := password
		if quoted {
			val = "'" + password + "'"
		}
		text := "host=db user=app password=" + val + " dbname=app"
		got := New().String(text)
		if strings.Contains(got, password) && !strings.Contains("host=db user=app password= dbname=app", password) {
			t.Fatalf("String(%q) = %q holds the password", text, got)
		}
	})
}
