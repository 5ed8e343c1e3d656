// Command chartsync copies the workflow manifests the Helm chart renders
// (workflowtemplates/ and tekton/, without Tekton's triggers) into
// charts/chartreuse/files/, and removes copies whose source is gone. The tests of
// test/helmchart fail while a copy is out of date.
//
//	go run ./test/cmd/chartsync [-root .] [-check]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/chartreuse-go/chartreuse/test/helmchart"
)

func main() {
	root := flag.String("root", ".", "repository root")
	check := flag.Bool("check", false, "write nothing; exit 1 if a copy is out of date")
	flag.Parse()
	if *check {
		copies, err := helmchart.Copies(*root)
		if err == nil {
			var stale []string
			if stale, err = helmchart.Stale(*root, copies); err == nil {
				for _, s := range stale {
					fmt.Fprintln(os.Stderr, "chartsync: out of date:", s)
				}
				if len(stale) > 0 {
					fmt.Fprintln(os.Stderr, "chartsync: run `go run ./test/cmd/chartsync`")
					os.Exit(1)
				}
				return
			}
		}
		fmt.Fprintln(os.Stderr, "chartsync:", err)
		os.Exit(1)
	}
	changed, err := helmchart.Sync(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chartsync:", err)
		os.Exit(1)
	}
	for _, c := range changed {
		fmt.Println("chartsync: updated", c)
	}
}
