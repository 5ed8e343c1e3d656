// Package kube connects the step binaries to the Kubernetes API and turns API errors
// into the exit-code classes of package failure.
//
// Options gives the --kubeconfig, --context and --namespace flags; Connect builds a
// clientset from a kubeconfig or, inside a pod, from the in-cluster service account,
// and resolves the namespace (flag, else the pod's own, else the kubeconfig's).
// Classify maps an error from client-go onto failure.Permanent or failure.Transient
// using k8s.io/apimachinery/pkg/api/errors and the net package, never error strings.
package kube
