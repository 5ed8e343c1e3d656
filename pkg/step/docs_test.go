package step

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

type docOptions struct {
	Wait  time.Duration
	Many  cli.StringSlice
	Force bool
}

func (o *docOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "wait", Value: 90 * time.Second, Usage: "how long to wait for <thing> | other", Destination: &o.Wait},
		&cli.StringSliceFlag{Name: "item", Usage: "an item; repeatable", Destination: &o.Many},
		&cli.BoolFlag{Name: "force", Value: true, Usage: "force it", Destination: &o.Force, EnvVars: []string{"FORCE_IT"}},
	}
}

func (o *docOptions) Validate() error { return nil }

func TestFlagDocs(t *testing.T) {
	spec := Spec{Name: "demo", Options: []Options{&testOptions{}, &docOptions{}}}
	got := map[string]FlagDoc{}
	var order []string
	for _, d := range FlagDocs(spec) {
		got[d.Name] = d
		order = append(order, d.Name)
	}
	want := []string{"log-format", "log-level", "results-dir", "manifest-version", "skip-version-check", "retry-transient-for", "refuse", "target-name", "count", "wait", "item", "force"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("order = %v, want %v", order, want)
	}
	for _, c := range []struct{ name, typ, def, env string }{
		{"log-format", "string", "text", "CHARTREUSE_LOG_FORMAT"},
		{"results-dir", "string", "", "CHARTREUSE_RESULTS_DIR"},
		{"skip-version-check", "bool", "false", "CHARTREUSE_SKIP_VERSION_CHECK"},
		{"count", "int", "1", "CHARTREUSE_COUNT"},
		{"wait", "duration", "1m30s", "CHARTREUSE_WAIT"},
		{"item", "list", "", "CHARTREUSE_ITEM"},
		{"force", "bool", "true", "FORCE_IT,CHARTREUSE_FORCE"},
	} {
		d := got[c.name]
		if d.Type != c.typ || d.Default != c.def || strings.Join(d.EnvVars, ",") != c.env {
			t.Errorf("%s: got type %q default %q env %v, want %q %q %s", c.name, d.Type, d.Default, d.EnvVars, c.typ, c.def, c.env)
		}
	}
	// Calling it twice must not pile up environment variables.
	again := FlagDocs(spec)
	if len(again[0].EnvVars) != 1 {
		t.Errorf("environment variables accumulate: %v", again[0].EnvVars)
	}
}

func TestReferenceEscapesMarkdown(t *testing.T) {
	ref := Reference(Spec{Name: "demo", Options: []Options{&docOptions{}}})
	if !strings.Contains(ref, "| `--wait` | `CHARTREUSE_WAIT` | duration | `1m30s` | how long to wait for &lt;thing&gt; \\| other |") {
		t.Errorf("row for --wait not rendered as expected:\n%s", ref)
	}
	if !strings.Contains(ref, "| `--results-dir` | `CHARTREUSE_RESULTS_DIR` | string | — |") {
		t.Errorf("a flag without default should show —:\n%s", ref)
	}
}

// TestFlagsMatchTheApp compares Flags with what the app that Run builds shows in
// --help, so the reference cannot drift from the binaries.
func TestFlagsMatchTheApp(t *testing.T) {
	spec := Spec{Name: "demo", Options: []Options{&testOptions{}, &docOptions{}}}
	_, stdout, _ := runStep(t, spec, "--help")
	line := regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)[^\n]*?(\[\$[^\]]+\])?$`)
	help := map[string]string{}
	for _, m := range line.FindAllStringSubmatch(stdout, -1) {
		if m[1] == "help" || m[1] == "version" {
			continue
		}
		help[m[1]] = m[2]
	}
	docs := FlagDocs(spec)
	if len(docs) != len(help) {
		t.Fatalf("FlagDocs has %d flags, --help %d:\n%s", len(docs), len(help), stdout)
	}
	for _, d := range docs {
		env, ok := help[d.Name]
		if !ok {
			t.Errorf("--%s is not in --help", d.Name)
			continue
		}
		if want := "[$" + strings.Join(d.EnvVars, ", $") + "]"; env != want {
			t.Errorf("--%s: --help shows %q, FlagDocs %q", d.Name, env, want)
		}
	}
}
