// Command wait-for-db is the wait-for-db phase of a Chartreuse migration workflow.
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/waitdb"
)

func main() { step.Main(waitdb.Spec()) }
