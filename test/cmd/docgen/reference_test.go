package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// The hand-written parts of docs/reference/README.md, checked against the code.

const referencePage = "docs/reference/README.md"

// section returns the text of the "## title" section of a Markdown document.
func section(t *testing.T, md, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(md, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// tableRows returns the cells of a section's Markdown table rows (header excluded).
func tableRows(text string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "|") || strings.HasPrefix(l, "|---") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(l, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	if len(rows) > 0 {
		rows = rows[1:]
	}
	return rows
}

var codeRE = regexp.MustCompile("`([^`]*)`")

func codes(cell string) []string {
	var out []string
	for _, m := range codeRE.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// firstTable is text up to the end of its first Markdown table.
func firstTable(text string) string {
	start := strings.Index(text, "\n|")
	if start < 0 {
		return ""
	}
	if end := strings.Index(text[start+1:], "\n\n"); end >= 0 {
		return text[:start+1+end]
	}
	return text
}

func TestReferenceExitCodes(t *testing.T) {
	rows := tableRows(firstTable(section(t, readRepo(t, referencePage), "Exit codes")))
	var got []string
	for _, r := range rows {
		got = append(got, codes(r[0])...)
	}
	want := []string{fmt.Sprint(failure.CodeOK), fmt.Sprint(failure.CodePermanent), fmt.Sprint(failure.CodeUsage), fmt.Sprint(failure.CodeTransient)}
	if !slices.Equal(got, want) {
		t.Errorf("exit codes documented %v, pkg/failure has %v", got, want)
	}
}

func TestReferenceAnnotations(t *testing.T) {
	text := section(t, readRepo(t, referencePage), "Annotations on workloads")
	var got []string
	for _, r := range tableRows(text) {
		got = append(got, codes(r[0])...)
	}
	want := []string{workload.AnnotationReplicas, workload.AnnotationSuspended, workload.AnnotationBy, workload.AnnotationAt, workload.AnnotationByRunUID, workload.AnnotationHeldBy, workload.AnnotationPriority}
	if !sameSet(got, want) {
		t.Errorf("annotations documented %v, pkg/workload has %v", got, want)
	}
	for _, r := range []string{workload.ReasonScaledDown, workload.ReasonRestored, workload.ReasonStillHeld} {
		if !strings.Contains(text, "`"+r+"`") {
			t.Errorf("the Event reason %s is not documented", r)
		}
	}
}

// TestReferenceRBAC: the table is exactly the scale steps' Role.
func TestReferenceRBAC(t *testing.T) {
	var role struct {
		Rules []struct {
			APIGroups []string `json:"apiGroups"`
			Resources []string `json:"resources"`
			Verbs     []string `json:"verbs"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal([]byte(readRepo(t, "pkg/workload/rbac/role.yaml")), &role); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					want = append(want, g+" "+res+" "+v)
				}
			}
		}
	}
	var got []string
	for _, r := range tableRows(section(t, readRepo(t, referencePage), "RBAC")) {
		group := strings.Trim(r[0], "`")
		if group == "core" {
			group = ""
		}
		for _, res := range codes(r[1]) {
			for _, v := range codes(r[2]) {
				got = append(got, group+" "+res+" "+v)
			}
		}
	}
	if !sameSet(got, want) {
		t.Errorf("RBAC table %v\ndiffers from pkg/workload/rbac/role.yaml %v", got, want)
	}
}

func TestReferenceFacts(t *testing.T) {
	md := readRepo(t, referencePage)
	for _, want := range []string{fmt.Sprint(migrate.LockID), "`" + migrate.DefaultTable + "`"} {
		if !strings.Contains(md+readRepo(t, "docs/operations.md"), want) {
			t.Errorf("the documentation does not mention %s", want)
		}
	}
}
