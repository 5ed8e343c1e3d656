package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// The few fields of the workflow definitions the documentation is generated from.

type argoParam struct {
	Name        string   `json:"name"`
	Value       *string  `json:"value"`
	Description string   `json:"description"`
	Enum        []string `json:"enum"`
}

type argoContainer struct {
	Image      string   `json:"image"`
	Command    []string `json:"command"`
	Args       []string `json:"args"`
	WorkingDir string   `json:"workingDir"`
	Env        []struct {
		Name      string `json:"name"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `json:"name"`
				Key  string `json:"key"`
			} `json:"secretKeyRef"`
		} `json:"valueFrom"`
	} `json:"env"`
}

type argoTemplate struct {
	Name   string `json:"name"`
	Inputs struct {
		Parameters []argoParam `json:"parameters"`
		Artifacts  []struct {
			Name string `json:"name"`
			Git  *struct {
				Repo     string `json:"repo"`
				Revision string `json:"revision"`
			} `json:"git"`
		} `json:"artifacts"`
	} `json:"inputs"`
	Container *argoContainer `json:"container"`
	Outputs   struct {
		Parameters []struct {
			Name       string `json:"name"`
			GlobalName string `json:"globalName"`
			ValueFrom  struct {
				Path string `json:"path"`
			} `json:"valueFrom"`
		} `json:"parameters"`
	} `json:"outputs"`
	DAG *struct {
		Tasks []struct {
			Name      string `json:"name"`
			Template  string `json:"template"`
			When      string `json:"when"`
			Arguments struct {
				Parameters []argoParam `json:"parameters"`
			} `json:"arguments"`
		} `json:"tasks"`
	} `json:"dag"`
}

// WorkflowTemplate is the Argo WorkflowTemplate, as far as the docs need it.
type WorkflowTemplate struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Entrypoint      string `json:"entrypoint"`
		OnExit          string `json:"onExit"`
		Synchronization struct {
			Mutexes []struct {
				Name string `json:"name"`
			} `json:"mutexes"`
		} `json:"synchronization"`
		Arguments struct {
			Parameters []argoParam `json:"parameters"`
		} `json:"arguments"`
		Templates []argoTemplate `json:"templates"`
	} `json:"spec"`
}

type tektonParam struct {
	Name        string  `json:"name"`
	Default     *string `json:"default"`
	Description string  `json:"description"`
}

// UnmarshalJSON reads an array param's default (e.g. the gate's check-durations)
// as its JSON text.
func (p *tektonParam) UnmarshalJSON(b []byte) error {
	var raw struct {
		Name        string          `json:"name"`
		Default     json.RawMessage `json:"default"`
		Description string          `json:"description"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	p.Name, p.Description, p.Default = raw.Name, raw.Description, nil
	if len(raw.Default) > 0 && string(raw.Default) != "null" {
		var s string
		if json.Unmarshal(raw.Default, &s) != nil {
			s = string(raw.Default)
		}
		p.Default = &s
	}
	return nil
}

type tektonStep struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	Results []struct {
		Name string `json:"name"`
	} `json:"results"`
}

// TektonObject is a Tekton Task or Pipeline, as far as the docs need it.
type TektonObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Params  []tektonParam `json:"params"`
		Results []struct {
			Name string `json:"name"`
		} `json:"results"`
		Steps []tektonStep `json:"steps"`
	} `json:"spec"`
}

type manifests struct {
	argo     WorkflowTemplate
	pipeline TektonObject
	tasks    []TektonObject // tekton/tasks/*.yaml, sorted by name
}

// Paths of the workflow definitions, relative to the repository root.
const (
	ArgoTemplateFile = "workflowtemplates/workflowtemplate.yaml"
	PipelineFile     = "tekton/pipeline.yaml"
	TasksDir         = "tekton/tasks"
)

func loadManifests(root string) (*manifests, error) {
	m := &manifests{}
	if err := readYAML(filepath.Join(root, ArgoTemplateFile), &m.argo); err != nil {
		return nil, err
	}
	if m.argo.Kind != "WorkflowTemplate" {
		return nil, fmt.Errorf("%s holds a %s, not a WorkflowTemplate", ArgoTemplateFile, m.argo.Kind)
	}
	if err := readYAML(filepath.Join(root, PipelineFile), &m.pipeline); err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(root, TasksDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		var t TektonObject
		if err := readYAML(f, &t); err != nil {
			return nil, err
		}
		if t.Kind == "Task" {
			m.tasks = append(m.tasks, t)
		}
	}
	sort.Slice(m.tasks, func(i, j int) bool { return m.tasks[i].Metadata.Name < m.tasks[j].Metadata.Name })
	return m, nil
}

func readYAML(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// paramRef finds references to workflow parameters in Argo templating and expressions.
var paramRef = regexp.MustCompile(`workflow\.parameters(?:\.([a-z0-9-]+)|\[\s*'([a-z0-9-]+)'\s*\])`)

func refs(s string) []string {
	var out []string
	for _, m := range paramRef.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1]+m[2])
	}
	return out
}

func refers(s, param string) bool { return slices.Contains(refs(s), param) }

// binaryOf is the step binary a container runs ("" when none).
func binaryOf(command []string) string {
	if len(command) == 0 {
		return ""
	}
	return path.Base(command[0])
}

// flagName is the --name of an argument --name=value.
func flagName(arg string) string {
	name, _, _ := strings.Cut(arg, "=")
	return name
}

// parameterUses says where the WorkflowTemplate uses a parameter.
func (m *manifests) parameterUses(param string) []string {
	var uses []string
	add := func(s string) {
		if !slices.Contains(uses, s) {
			uses = append(uses, s)
		}
	}
	for _, mu := range m.argo.Spec.Synchronization.Mutexes {
		if refers(mu.Name, param) {
			add("key of the one-run-per-database mutex")
		}
	}
	for _, t := range m.argo.Spec.Templates {
		if c := t.Container; c != nil && !isGuard(t) {
			bin := binaryOf(c.Command)
			if refers(c.Image, param) {
				add("image of every step")
			}
			for _, a := range c.Args {
				switch {
				case !refers(a, param):
				case strings.HasPrefix(a, "{{"): // an argument chosen by expression: pull-image's checks
					add("`" + bin + "` parameter checks of the single-phase entrypoints")
				default:
					add("`" + bin + " " + flagName(a) + "`")
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
					(refers(e.ValueFrom.SecretKeyRef.Name, param) || refers(e.ValueFrom.SecretKeyRef.Key, param)) {
					add("Secret read into `" + e.Name + "`")
				}
			}
		}
		for _, a := range t.Inputs.Artifacts {
			if a.Git != nil && (refers(a.Git.Repo, param) || refers(a.Git.Revision, param)) {
				add("git checkout of the migrations")
			}
		}
		if t.DAG != nil {
			for _, task := range t.DAG.Tasks {
				used := refers(task.When, param)
				for _, p := range task.Arguments.Parameters {
					if p.Value != nil && refers(*p.Value, param) {
						used = true
					}
				}
				if used {
					if t.Name == m.argo.Spec.OnExit {
						add("exit-handler conditions")
					} else {
						add("`" + t.Name + "` DAG conditions")
					}
				}
			}
		}
	}
	if len(uses) == 0 {
		return []string{"—"}
	}
	return uses
}

type flagUse struct{ template, args string }

// flagsFedBy lists, per Argo template running binary, the arguments and variables
// that depend on parameters.
func (m *manifests) flagsFedBy(binary string) []flagUse {
	var out []flagUse
	for _, t := range m.argo.Spec.Templates {
		c := t.Container
		if c == nil || binaryOf(c.Command) != binary || isGuard(t) {
			continue
		}
		var parts []string
		for _, a := range c.Args {
			if strings.Contains(a, "{{") || strings.HasPrefix(a, "--") {
				parts = append(parts, "`"+strings.ReplaceAll(a, "|", `\|`)+"`")
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				parts = append(parts, "`"+e.Name+"` from Secret `"+e.ValueFrom.SecretKeyRef.Name+"`, key `"+e.ValueFrom.SecretKeyRef.Key+"`")
			}
		}
		out = append(out, flagUse{t.Name, strings.Join(parts, "<br>")})
	}
	return out
}

// resultReaders maps each result of binary that a workflow reads to who reads it.
// known are the binary's results: when several steps of a Tekton Task write the
// Task's results, a result is attributed to binary only if it is one of them.
func (m *manifests) resultReaders(binary string, known []string) map[string][]string {
	out := map[string][]string{}
	for _, t := range m.argo.Spec.Templates {
		c := t.Container
		if c == nil || binaryOf(c.Command) != binary {
			continue
		}
		dir := argValue(c.Args, "--results-dir")
		for _, p := range t.Outputs.Parameters {
			if dir == "" || path.Dir(p.ValueFrom.Path) != dir {
				continue
			}
			who := "Argo `" + t.Name + "`"
			if p.GlobalName != "" && p.GlobalName != p.Name {
				who += " (global `" + p.GlobalName + "`)"
			}
			name := path.Base(p.ValueFrom.Path)
			out[name] = append(out[name], who)
		}
	}
	for _, t := range m.tasks {
		for _, s := range t.Spec.Steps {
			if binaryOf(s.Command) != binary {
				continue
			}
			dir := argValue(s.Args, "--results-dir")
			var names []string
			who := "Tekton `" + t.Metadata.Name + "`"
			switch {
			case dir == "/tekton/results":
				shared := 0
				for _, o := range t.Spec.Steps {
					if argValue(o.Args, "--results-dir") == dir {
						shared++
					}
				}
				for _, r := range t.Spec.Results {
					if shared == 1 || slices.Contains(known, r.Name) {
						names = append(names, r.Name)
					}
				}
			case dir == "/tekton/steps/step-"+s.Name+"/results":
				for _, r := range s.Results {
					names = append(names, r.Name)
				}
				who += " step `" + s.Name + "`"
			}
			for _, n := range names {
				if !slices.Contains(out[n], who) {
					out[n] = append(out[n], who)
				}
			}
		}
	}
	return out
}

func argValue(args []string, flag string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// sameParameters checks that the Pipeline has exactly the WorkflowTemplate's
// parameters.
func (m *manifests) sameParameters() error {
	var argo, tekton []string
	for _, p := range m.argo.Spec.Arguments.Parameters {
		argo = append(argo, p.Name)
	}
	for _, p := range m.pipeline.Spec.Params {
		tekton = append(tekton, p.Name)
	}
	var only []string
	for _, n := range argo {
		if _, ok := ArgoOnly[n]; !slices.Contains(tekton, n) && !ok {
			only = append(only, n+" (Argo only)")
		}
	}
	for _, n := range tekton {
		if _, ok := TektonOnly[n]; !slices.Contains(argo, n) && !ok {
			only = append(only, n+" (Tekton only)")
		}
	}
	if len(only) > 0 {
		return fmt.Errorf("the WorkflowTemplate and the Pipeline have different parameters: %s", strings.Join(only, ", "))
	}
	return nil
}

// isEntrypoint reports whether t is the main DAG or a single-phase entrypoint: a
// DAG that pulls the image, then runs the phase's pod.
func (m *manifests) isEntrypoint(t argoTemplate) bool {
	return t.Name == m.argo.Spec.Entrypoint || t.DAG != nil && t.Name != m.argo.Spec.OnExit
}

// phasePod returns the container template that the single-phase entrypoint t runs
// after pull-image.
func (m *manifests) phasePod(t argoTemplate) (argoTemplate, bool) {
	if t.DAG == nil || t.Name == m.argo.Spec.Entrypoint {
		return argoTemplate{}, false
	}
	for _, task := range t.DAG.Tasks {
		if pod, ok := m.template(task.Template); ok && pod.Container != nil && !isProbe(pod) && !isGuard(pod) {
			return pod, true
		}
	}
	return argoTemplate{}, false
}

// isProbe reports whether t only starts its image (pull-image): no phase.
func isProbe(t argoTemplate) bool {
	return t.Container != nil && slices.Equal(t.Container.Args, []string{"--version"})
}

// isGuard reports whether t is the template that fails a run with an invalid
// parameter: it passes its binary --refuse=<message>, which the binary prints
// as its usage error; it is not a phase.
func isGuard(t argoTemplate) bool {
	if t.Container == nil {
		return false
	}
	for _, a := range t.Container.Args {
		if a == "--refuse" || strings.HasPrefix(a, "--refuse=") {
			return true
		}
	}
	return false
}

// template returns the named Argo template.
func (m *manifests) template(name string) (argoTemplate, bool) {
	for _, t := range m.argo.Spec.Templates {
		if t.Name == name {
			return t, true
		}
	}
	return argoTemplate{}, false
}

// task returns the named Tekton Task.
func (m *manifests) task(name string) (TektonObject, bool) {
	for _, t := range m.tasks {
		if t.Metadata.Name == name {
			return t, true
		}
	}
	return TektonObject{}, false
}
