// Command docgen writes the generated part of the reference documentation,
// docs/reference/<step>.md and docs/reference/parameters.md, from the step binaries'
// own app definitions (the step.Spec each main passes to step.Main) and from the
// workflow definitions (workflowtemplates/workflowtemplate.yaml, tekton/). `make docs`
// runs it; the package's tests fail when the committed files differ from what it
// prints, and check every command shown in README.md and docs/.
//
//	go run ./test/cmd/docgen [-root .] [-check]
//
// Conventions for the documents the tests read (README.md, docs/**/*.md):
//   - every fenced code block names its language (sh, sql, yaml, json, text, ...);
//   - sh blocks are checked command by command; text blocks are not (UI steps, log
//     lines, messages), nor is a block preceded by the line <!-- docs:illustrative -->;
//   - messages quoted in docs/troubleshooting.md are rebuilt from the code by
//     messages_test.go; the SQL of docs/migrating-from-chartreuse.md, of
//     docs/operations.md and the README's example migration runs on a real PostgreSQL
//     in ./dbtest.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

func main() {
	root := flag.String("root", ".", "repository root")
	check := flag.Bool("check", false, "write nothing; exit 1 if a generated file is out of date")
	flag.Parse()
	files, err := Generate(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
	stale, err := Stale(*root, files)
	if err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
	if *check {
		for _, s := range stale {
			fmt.Fprintln(os.Stderr, "docgen: out of date:", s)
		}
		if len(stale) > 0 {
			fmt.Fprintln(os.Stderr, "docgen: run `make docs`")
			os.Exit(1)
		}
		return
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		path := filepath.Join(*root, n)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, files[n]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "docgen:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, files[n], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "docgen:", err)
			os.Exit(1)
		}
		fmt.Println("docgen: wrote", n)
	}
	// Generated files that nothing generates any more (a step was renamed).
	for _, s := range stale {
		if _, ok := files[s]; !ok {
			if err := os.Remove(filepath.Join(*root, s)); err != nil {
				fmt.Fprintln(os.Stderr, "docgen:", err)
				os.Exit(1)
			}
			fmt.Println("docgen: removed", s)
		}
	}
}
