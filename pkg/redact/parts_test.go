package redact

import "testing"

// A secret that breaks the SQL it is substituted into reaches an error only in
// pieces, each quoted by PostgreSQL or its parser: those pieces are masked,
// other quoted text is left alone.
func TestQuotedPartsOfSecretsAreMasked(t *testing.T) {
	r := New()
	r.Add("s3cr3t' t0ken-value")
	for in, want := range map[string]string{
		`unrecognized role option "t0ken"`:                  `unrecognized role option "xxxxx"`,
		`syntax error at or near "t0ken-value"`:             `syntax error at or near "xxxxx"`,
		`syntax error at or near "'"`:                       `syntax error at or near "'"`,
		`column "id" of relation "accounts" does not exist`: `column "id" of relation "accounts" does not exist`,
		`relation "s3cr" does not exist`:                    `relation "xxxxx" does not exist`,
	} {
		if got := r.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	if got := New().String(`near "t0ken"`); got != `near "t0ken"` {
		t.Errorf("with no secret registered: %q", got)
	}
}
