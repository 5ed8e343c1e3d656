// Command pipelinegen writes tekton/pipeline.yaml, the installed Tekton
// Pipeline, from tekton/pipeline-source.yaml with the Tasks of tekton/tasks
// embedded (package test/tektonembed says why). test/manifests fails while it is
// out of date.
//
//	go run ./test/cmd/pipelinegen [-root .]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/chartreuse-go/chartreuse/test/tektonembed"
)

func main() {
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	changed, err := tektonembed.Write(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipelinegen:", err)
		os.Exit(1)
	}
	if changed {
		fmt.Println("pipelinegen: updated the Pipelines of", tektonembed.TasksDir, "sources")
	}
}
