package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Every command shown in README.md and docs/ is checked against the repository: make
// targets, step binary flags, repository paths, kustomize directories, WorkflowTemplate
// names, entrypoints and parameters (with their allowed values), Tekton Tasks and their
// parameters, and the CHARTREUSE_ variables. Links between the documents must resolve,
// anchors included. Blocks marked Illustrative, and text blocks, are not checked.

// docFiles are the Markdown files this test reads, relative to the repository root.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(repoRoot, "docs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(repoRoot, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// checker holds what commands are checked against.
type checker struct {
	t        *testing.T
	targets  map[string]bool
	flags    map[string]map[string]bool // binary -> flag names
	envVars  map[string]bool            // CHARTREUSE_ variables of the binaries
	wf       *manifests
	accounts map[string]bool // ServiceAccounts in the manifests
}

var makeTargetRE = regexp.MustCompile(`(?m)^([A-Za-z0-9][A-Za-z0-9_.-]*):([^=]|$)`)

func newChecker(t *testing.T) *checker {
	c := &checker{t: t, targets: map[string]bool{}, flags: map[string]map[string]bool{}, envVars: map[string]bool{}, accounts: map[string]bool{}}
	for _, m := range makeTargetRE.FindAllStringSubmatch(readRepo(t, "Makefile"), -1) {
		c.targets[m[1]] = true
	}
	for _, b := range Binaries {
		c.flags[b.name] = map[string]bool{"help": true, "h": true, "version": true, "v": true}
		for _, d := range step.FlagDocs(b.spec()) {
			c.flags[b.name][d.Name] = true
			for _, e := range d.EnvVars {
				c.envVars[e] = true
			}
		}
	}
	wf, err := loadManifests(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	c.wf = wf
	for _, f := range []string{"workflowtemplates/rbac.yaml", "tekton/rbac.yaml", "tekton/triggers/rbac.yaml"} {
		for _, doc := range strings.Split(readRepo(t, f), "\n---") {
			var o struct {
				Kind     string
				Metadata struct{ Name string }
			}
			if err := yaml.Unmarshal([]byte(doc), &o); err == nil && o.Kind == "ServiceAccount" {
				c.accounts[o.Metadata.Name] = true
			}
		}
	}
	return c
}

// repoPathRE finds words that name something in this repository.
var repoPathRE = regexp.MustCompile(`^(README\.md|Makefile|VERSION|(workflowtemplates|tekton|pkg|docs|images|steps|test)/[A-Za-z0-9_./-]*)$`)

// option returns the values of a flag given as "-x v", "--x v" or "--x=v".
func option(words []string, names ...string) []string {
	var out []string
	for i, w := range words {
		for _, n := range names {
			if w == n && i+1 < len(words) {
				out = append(out, words[i+1])
			} else if v, ok := strings.CutPrefix(w, n+"="); ok && strings.HasPrefix(n, "--") {
				out = append(out, v)
			}
		}
	}
	return out
}

// positional returns the words after the first n that are not flags or flag values
// (flags in valued lists take the next word).
func positional(words []string, valued ...string) []string {
	var out []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") {
			if slices.Contains(valued, w) {
				i++
			}
			continue
		}
		out = append(out, w)
	}
	return out
}

// check checks one command; where names the block for messages.
func (c *checker) check(where string, cmd Command) {
	c.t.Helper()
	for _, p := range c.problems(cmd) {
		c.t.Errorf("%s: `%s`: %s", where, strings.Join(cmd.Words, " "), p)
	}
}

// problems lists what is wrong with one command.
func (c *checker) problems(cmd Command) []string {
	words := cmd.Words
	var out []string
	errf := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, w := range words {
		p := strings.TrimRight(w, ".,:;")
		if repoPathRE.MatchString(p) && !strings.Contains(p, "$") && !strings.Contains(p, "*") && !exists(p) {
			errf("%s does not exist in the repository", p)
		}
	}
	if len(words) == 0 {
		return out
	}
	name := path.Base(words[0])
	switch {
	case name == "make":
		for _, target := range positional(words[1:], "-C", "-f") {
			if !strings.Contains(target, "=") && !c.targets[target] {
				errf("the Makefile has no target %q", target)
			}
		}
	case c.flags[name] != nil:
		for _, w := range words[1:] {
			if !strings.HasPrefix(w, "-") {
				continue
			}
			f := strings.TrimLeft(strings.SplitN(w, "=", 2)[0], "-")
			if !c.flags[name][f] {
				errf("%s has no flag --%s", name, f)
			}
		}
	case name == "kubectl":
		c.checkKubectl(errf, words)
	case name == "argo":
		c.checkArgo(errf, words)
	case name == "tkn":
		c.checkTkn(errf, words)
	case name == "sed":
		c.checkSed(errf, words)
	}
	return out
}

func (c *checker) checkKubectl(errf func(string, ...any), words []string) {
	for _, dir := range option(words, "-k", "--kustomize") {
		if !exists(path.Join(dir, "kustomization.yaml")) {
			errf("%s has no kustomization.yaml", dir)
		}
	}
	for _, f := range option(words, "-f", "--filename") {
		if f == "-" || strings.Contains(f, "://") {
			continue
		}
		if !exists(f) {
			errf("%s does not exist", f)
		}
	}
}

func (c *checker) checkArgo(errf func(string, ...any), words []string) {
	if len(words) < 2 || words[1] != "submit" {
		return
	}
	wt := c.wf.argo
	for _, from := range option(words, "--from") {
		kind, name, _ := strings.Cut(from, "/")
		if kind != "workflowtemplate" || name != wt.Metadata.Name {
			errf("--from %s: the WorkflowTemplate is workflowtemplate/%s", from, wt.Metadata.Name)
		}
	}
	entry := wt.Spec.Entrypoint
	if e := option(words, "--entrypoint", "-e"); len(e) > 0 {
		entry = e[0]
	}
	tmpl, ok := c.wf.template(entry)
	if !ok {
		errf("the WorkflowTemplate has no template %q to use as --entrypoint", entry)
	}
	params := map[string]argoParam{}
	for _, p := range wt.Spec.Arguments.Parameters {
		params[p.Name] = p
	}
	for _, p := range tmpl.Inputs.Parameters {
		params[p.Name] = p
	}
	for _, kv := range option(words, "-p", "--parameter") {
		n, v, _ := strings.Cut(kv, "=")
		p, ok := params[n]
		if !ok {
			errf("parameter %q is neither a parameter of the WorkflowTemplate nor an input of entrypoint %s", n, entry)
			continue
		}
		if len(p.Enum) > 0 && !strings.Contains(v, "$") && !slices.Contains(p.Enum, v) {
			errf("parameter %s=%s: allowed values are %v", n, v, p.Enum)
		}
	}
	for _, in := range tmpl.Inputs.Parameters {
		if in.Value == nil && !slices.ContainsFunc(option(words, "-p", "--parameter"), func(kv string) bool { return strings.HasPrefix(kv, in.Name+"=") }) {
			errf("entrypoint %s needs -p %s=...", entry, in.Name)
		}
	}
	for _, p := range wt.Spec.Arguments.Parameters {
		if p.Value == nil && !slices.ContainsFunc(option(words, "-p", "--parameter"), func(kv string) bool { return strings.HasPrefix(kv, p.Name+"=") }) {
			errf("the WorkflowTemplate's parameter %s has no default: pass -p %s=...", p.Name, p.Name)
		}
	}
}

func (c *checker) checkTkn(errf func(string, ...any), words []string) {
	if len(words) < 4 || words[2] != "start" {
		return
	}
	var params []tektonParam
	switch words[1] {
	case "task":
		task, ok := c.wf.task(words[3])
		if !ok {
			errf("there is no Task %q in tekton/tasks", words[3])
			return
		}
		params = task.Spec.Params
	case "pipeline":
		if words[3] != c.wf.pipeline.Metadata.Name {
			errf("the Pipeline is %s", c.wf.pipeline.Metadata.Name)
			return
		}
		params = c.wf.pipeline.Spec.Params
	default:
		return
	}
	for _, sa := range option(words, "-s", "--serviceaccount") {
		if !c.accounts[sa] {
			errf("no ServiceAccount %q in the manifests", sa)
		}
	}
	given := option(words, "-p", "--param")
	for _, kv := range given {
		n, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(params, func(p tektonParam) bool { return p.Name == n }) {
			errf("%s has no parameter %q", words[3], n)
		}
	}
	if slices.Contains(words, "--last") {
		return // the parameters of the last run
	}
	for _, p := range params {
		if p.Default == nil && !slices.ContainsFunc(given, func(kv string) bool { return strings.HasPrefix(kv, p.Name+"=") }) {
			errf("%s's parameter %s has no default: pass -p %s=...", words[3], p.Name, p.Name)
		}
	}
}

// sedPattern returns the pattern of a sed s command ("s/re/repl/").
func sedPattern(expr string) (string, bool) {
	if len(expr) < 3 || expr[0] != 's' {
		return "", false
	}
	delim := expr[1]
	for i := 2; i < len(expr); i++ {
		switch expr[i] {
		case '\\':
			i++
		case delim:
			return expr[2:i], true
		}
	}
	return "", false
}

func (c *checker) checkSed(errf func(string, ...any), words []string) {
	if !slices.Contains(words, "-i") {
		return
	}
	args := positional(words[1:], "-e")
	if len(args) < 2 {
		return
	}
	pattern, ok := sedPattern(args[0])
	if !ok {
		return
	}
	re, err := regexp.Compile("(?m)" + pattern)
	if err != nil {
		errf("cannot read the sed expression: %v", err)
		return
	}
	for _, f := range args[1:] {
		if exists(f) && !re.MatchString(readRepo(c.t, f)) {
			errf("%s has no line matching %q: the command would change nothing", f, pattern)
		}
	}
}

// The original Chartreuse's settings, which the migration guide names.
var originalSettings = map[string]bool{
	"CHARTREUSE_ENABLE_STOP_PODS":                         true,
	"CHARTREUSE_UPGRADE_BEFORE_DEPLOYMENT":                true,
	"CHARTREUSE_ALEMBIC_POSTGRES_WAIT_CONFIGURED_TIMEOUT": true,
	"CHARTREUSE_PATRONI_POSTGRESQL":                       true,
	"CHARTREUSE_MULTI_CONFIG_PATH":                        true,
}

var envNameRE = regexp.MustCompile(`CHARTREUSE_[A-Z0-9_]*[A-Z0-9]`)

// scriptEnvVars are the CHARTREUSE_ variables the repository's own scripts and test
// environment read (CHARTREUSE_CACHE, ...).
func scriptEnvVars(t *testing.T) map[string]bool {
	out := map[string]bool{}
	for _, dir := range []string{"test", ".ci"} {
		_ = filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.Contains(p, "docgen") {
				return nil
			}
			if strings.HasSuffix(p, ".sh") || strings.HasSuffix(p, ".go") || !strings.Contains(path.Base(p), ".") {
				b, _ := os.ReadFile(p)
				for _, n := range envNameRE.FindAllString(string(b), -1) {
					out[n] = true
				}
			}
			return nil
		})
	}
	for _, n := range envNameRE.FindAllString(readRepo(t, "Makefile"), -1) {
		out[n] = true
	}
	return out
}

var allowedLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true, "sql": true,
	"yaml": true, "json": true, "text": true, "dockerfile": true, "go": true, "promql": true}

func TestDocumentedCommands(t *testing.T) {
	c := newChecker(t)
	scripts := scriptEnvVars(t)
	checked := 0
	for _, f := range docFiles(t) {
		md := readRepo(t, f)
		for _, b := range Blocks(md) {
			where := fmt.Sprintf("%s:%d", f, b.Line)
			if !allowedLangs[b.Lang] {
				t.Errorf("%s: a code block needs a language (one of sh, sql, yaml, json, text, ...), got %q", where, b.Lang)
			}
			if b.Illustrative {
				continue
			}
			switch b.Lang {
			case "sh", "bash", "shell", "console":
				for _, cmd := range ParseShell(b.Body) {
					c.check(fmt.Sprintf("%s:%d", f, b.Line+cmd.Line), cmd)
					checked++
				}
			case "yaml":
				var v any
				if err := yaml.Unmarshal([]byte(b.Body), &v); err != nil {
					t.Errorf("%s: YAML does not parse: %v", where, err)
				}
			case "json":
				if !json.Valid([]byte(b.Body)) {
					t.Errorf("%s: JSON does not parse", where)
				}
			}
		}
		for _, n := range envNameRE.FindAllString(md, -1) {
			switch {
			case c.envVars[n], scripts[n]:
			case originalSettings[n] && f == "docs/migrating-from-chartreuse.md":
			default:
				t.Errorf("%s: %s is neither a step flag's variable nor one the repository's scripts read", f, n)
			}
		}
	}
	if checked < 40 {
		t.Errorf("only %d commands found: is the parser broken?", checked)
	}
}

func TestDocumentLinks(t *testing.T) {
	anchors := map[string]map[string]bool{}
	anchorsOf := func(rel string) map[string]bool {
		if a, ok := anchors[rel]; ok {
			return a
		}
		a := Anchors(readRepo(t, rel))
		anchors[rel] = a
		return a
	}
	for _, f := range docFiles(t) {
		for _, l := range Links(readRepo(t, f)) {
			if strings.Contains(l.Target, "://") || strings.HasPrefix(l.Target, "mailto:") {
				continue
			}
			target, anchor, _ := strings.Cut(l.Target, "#")
			rel := f
			if target != "" {
				rel = path.Clean(path.Join(path.Dir(f), target))
			}
			if !exists(rel) {
				t.Errorf("%s:%d: link to %s: no such file", f, l.Line, rel)
				continue
			}
			if anchor != "" && strings.HasSuffix(rel, ".md") && !anchorsOf(rel)[anchor] {
				t.Errorf("%s:%d: link to %s#%s: no such heading", f, l.Line, rel, anchor)
			}
		}
	}
}

// TestExamples checks the example files under docs/examples against the manifests,
// and the commands of the GitLab CI jobs like those of the documents.
func TestExamples(t *testing.T) {
	c := newChecker(t)

	var wf struct {
		APIVersion string `json:"apiVersion"`
		Kind       string
		Metadata   struct {
			Name        string
			Annotations map[string]string
		}
		Spec struct {
			WorkflowTemplateRef struct{ Name string } `json:"workflowTemplateRef"`
			Arguments           struct {
				Parameters []struct{ Name, Value string }
			}
		}
	}
	if err := yaml.UnmarshalStrict([]byte(readRepo(t, "docs/examples/argocd-presync-workflow.yaml")), &wf); err != nil {
		t.Fatal(err)
	}
	if wf.Kind != "Workflow" || wf.Spec.WorkflowTemplateRef.Name != c.wf.argo.Metadata.Name {
		t.Errorf("argocd-presync-workflow.yaml: a Workflow of workflowTemplateRef %s expected, got %s of %s", c.wf.argo.Metadata.Name, wf.Kind, wf.Spec.WorkflowTemplateRef.Name)
	}
	if wf.Metadata.Annotations["argocd.argoproj.io/hook"] != "PreSync" {
		t.Errorf("argocd-presync-workflow.yaml is not a PreSync hook")
	}
	args := []string{"argo", "submit", "--from", "workflowtemplate/" + wf.Spec.WorkflowTemplateRef.Name}
	for _, p := range wf.Spec.Arguments.Parameters {
		args = append(args, "-p", p.Name+"="+p.Value)
	}
	c.check("docs/examples/argocd-presync-workflow.yaml", Command{Words: args})

	var ci map[string]any
	if err := yaml.Unmarshal([]byte(readRepo(t, "docs/examples/gitlab-ci.yml")), &ci); err != nil {
		t.Fatal(err)
	}
	n := 0
	for job, v := range ci {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		for _, key := range []string{"before_script", "script"} {
			lines, _ := m[key].([]any)
			for _, l := range lines {
				s, _ := l.(string)
				for _, cmd := range ParseShell(s) {
					c.check("docs/examples/gitlab-ci.yml "+job+"."+key, cmd)
					n++
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("gitlab-ci.yml: only %d commands found", n)
	}
}

// TestSummaryExample: the summary line shown in the reference is what a step prints.
func TestSummaryExample(t *testing.T) {
	md := readRepo(t, "docs/reference/README.md")
	found := false
	for _, b := range Blocks(md) {
		if b.Lang != "json" {
			continue
		}
		found = true
		var s results.Summary
		dec := json.NewDecoder(bytes.NewReader([]byte(b.Body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("the summary example is not a results.Summary: %v", err)
		}
		if s.Step != "migrate" {
			continue
		}
		var names []string
		for n := range s.Results {
			names = append(names, n)
		}
		for _, bin := range Binaries {
			if bin.name != "migrate" {
				continue
			}
			var want []string
			for _, r := range bin.results {
				// The example is a --plan, which writes every result but these.
				if !strings.HasPrefix(r.meaning, "not with `--plan`") {
					want = append(want, r.name)
				}
			}
			if !sameSet(names, want) {
				t.Errorf("the summary example's results %v are not migrate's %v", names, want)
			}
		}
	}
	if !found {
		t.Error("no JSON summary example in docs/reference/README.md")
	}
}

// TestCheckerCatchesMistakes: the checks find what they are meant to find.
func TestCheckerCatchesMistakes(t *testing.T) {
	c := newChecker(t)
	for _, tc := range []struct{ cmd, want string }{
		{"make no-such-target", "no target"},
		{"bin/migrate --skip-version-check --no-such-flag", "no flag --no-such-flag"},
		{"scale-down --selector=a=b --lock-wait 1m", "no flag --lock-wait"},
		{"kubectl apply -k docs/", "no kustomization.yaml"},
		{"kubectl create -f tekton/examples/nothing.yaml", "does not exist"},
		{"cat workflowtemplates/nothing.yaml", "does not exist"},
		{"argo submit --from workflowtemplate/other -p database-secret=x", "the WorkflowTemplate is"},
		{"argo submit --from workflowtemplate/chartreuse --entrypoint nope -p database-secret=x", "no template"},
		{"argo submit --from workflowtemplate/chartreuse -p database-secret=x -p nope=1", `parameter "nope"`},
		{"argo submit --from workflowtemplate/chartreuse -p database-secret=x -p on-migrate-failure=retry", "allowed values"},
		{"argo submit --from workflowtemplate/chartreuse --entrypoint rollback -p database-secret=x", "needs -p down-to"},
		{"argo submit --from workflowtemplate/chartreuse", "database-secret has no default"},
		{"tkn task start chartreuse-nope -p a=b", "no Task"},
		{"tkn task start chartreuse-migrate -s nobody -p database-secret=x", "no ServiceAccount"},
		{"tkn task start chartreuse-migrate -p database-secret=x -p down-to=1", `no parameter "down-to"`},
		{"tkn task start chartreuse-rollback -p database-secret=x", "down-to has no default"},
		{"sed -i 's/^nothing-like-this: .*/x/' tekton/kustomization.yaml", "would change nothing"},
	} {
		cmds := ParseShell(tc.cmd)
		if len(cmds) != 1 {
			t.Fatalf("%s: parsed as %d commands", tc.cmd, len(cmds))
		}
		probs := strings.Join(c.problems(cmds[0]), "\n")
		if !strings.Contains(probs, tc.want) {
			t.Errorf("%s: want a problem containing %q, got %q", tc.cmd, tc.want, probs)
		}
	}
	for _, ok := range []string{
		"make build",
		"bin/migrate --skip-version-check --dir db/migrations --plan",
		"kubectl apply -n shop -k workflowtemplates/",
		"argo submit -n shop --from workflowtemplate/chartreuse --entrypoint rollback -p database-secret=x -p down-to=1",
		"tkn task start chartreuse-scale-restore -n shop -s chartreuse-pipeline -p workload-selector=a=b",
	} {
		if p := c.problems(ParseShell(ok)[0]); len(p) > 0 {
			t.Errorf("%s: unexpected problems %v", ok, p)
		}
	}
}

func TestParseShell(t *testing.T) {
	src := `name=$(argo submit -n shop \
  -p a=b -o name)   # comment
x=1 y="two words" make build && echo 'a # not a comment' | tee out.txt 2>&1
python3 - <<'PY' > out.txt
print("not a command: make nope")
PY
if [ "$a" = b ]; then up=$rev; else up=$a:$rev; fi`
	var got []string
	for _, c := range ParseShell(src) {
		got = append(got, fmt.Sprintf("%d:%s|%s", c.Line, strings.Join(c.Env, ","), strings.Join(c.Words, " ")))
	}
	want := []string{
		"1:|argo submit -n shop -p a=b -o name",
		"1:name=$(argo submit -n shop    -p a=b -o name)|",
		"3:x=1,y=two words|make build",
		"3:|echo a # not a comment",
		"3:|tee out.txt",
		"4:|python3 -",
		"7:|[ $a = b ]",
		"7:up=$rev|",
		"7:up=$a:$rev|",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
