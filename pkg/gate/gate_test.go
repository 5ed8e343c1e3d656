package gate

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestLeaseName(t *testing.T) {
	long := strings.Repeat("a", 250)
	for _, tt := range []struct {
		secret, want string
	}{
		{"app-database", "chartreuse-app-database"},
		{strings.Repeat("s", 242), "chartreuse-" + strings.Repeat("s", 242)}, // 253: fits
	} {
		if got := LeaseName(tt.secret); got != tt.want {
			t.Errorf("LeaseName(%q) = %q, want %q", tt.secret, got, tt.want)
		}
	}
	a, b := LeaseName(long+"x"), LeaseName(long+"y")
	if a == b {
		t.Errorf("two long names share the gate %q", a)
	}
	for _, n := range []string{a, b, LeaseName(strings.Repeat("a.", 126) + "b")} {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("%q is not a valid name: %v", n, errs)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := func() Options {
		return Options{Action: ActionAcquire, DatabaseSecret: "db", RunName: "r", RunUID: "u", Timeout: 1, PollInterval: 1}
	}
	for _, tt := range []struct {
		name string
		edit func(*Options)
		want string // "" = valid
	}{
		{"valid", func(*Options) {}, ""},
		{"release", func(o *Options) { o.Action = ActionRelease }, ""},
		{"typo in action", func(o *Options) { o.Action = "Acquire" }, `--action "Acquire"`},
		{"no secret", func(o *Options) { o.DatabaseSecret = "" }, "--database-secret is required"},
		{"bad secret", func(o *Options) { o.DatabaseSecret = "App_DB" }, "not a valid Secret name"},
		{"no run uid", func(o *Options) { o.RunUID = "" }, "--run-uid"},
		{"zero timeout", func(o *Options) { o.Timeout = 0 }, "must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := ok()
			tt.edit(&o)
			err := o.Validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
