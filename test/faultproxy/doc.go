// Package faultproxy is an HTTPS proxy before a Kubernetes API server that
// plays a flaky network or gateway for the requests its rules match: an answer
// lost after the change is made, a request held unsent or unanswered, an error
// status before or after the request is passed on, a delay, a watch cut. Tests
// point a step's kubeconfig at it (Point) to see what the step does then.
package faultproxy
