package workload

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Kind is a kind of workload that the steps know how to stop.
type Kind string

// The supported kinds, spelled as in --workload and in results.
const (
	Deployment  Kind = "deployment"
	StatefulSet Kind = "statefulset"
	CronJob     Kind = "cronjob"
)

var kindNames = map[string]Kind{
	"deployment": Deployment, "deployments": Deployment, "deploy": Deployment,
	"deployment.apps": Deployment, "deployments.apps": Deployment,
	"statefulset": StatefulSet, "statefulsets": StatefulSet, "sts": StatefulSet,
	"statefulset.apps": StatefulSet, "statefulsets.apps": StatefulSet,
	"cronjob": CronJob, "cronjobs": CronJob, "cj": CronJob,
	"cronjob.batch": CronJob, "cronjobs.batch": CronJob,
}

// ParseKind reads a kind name, case-insensitively, including kubectl's short names.
func ParseKind(s string) (Kind, bool) {
	k, ok := kindNames[strings.ToLower(strings.TrimSpace(s))]
	return k, ok
}

// Scalable reports whether the kind is stopped by scaling to 0 (else by suspending).
func (k Kind) Scalable() bool { return kinds[k].scalable }

// Resource is the API resource name (plural).
func (k Kind) Resource() string { return string(k) + "s" }

// Group is the API group.
func (k Kind) Group() string {
	if o, ok := kinds[k]; ok {
		return o.group
	}
	return "apps"
}

// APIVersion is the group/version the steps use.
func (k Kind) APIVersion() string { return k.Group() + "/v1" }

// KindName is the Kind as spelled in objects (Deployment, StatefulSet, CronJob).
func (k Kind) KindName() string {
	if o, ok := kinds[k]; ok {
		return o.kindName
	}
	return string(k)
}

// Kinds lists the supported kinds in a fixed order.
func Kinds() []Kind { return []Kind{Deployment, StatefulSet, CronJob} }

// Ref names one workload.
type Ref struct {
	Kind Kind
	Name string
}

func (r Ref) String() string { return string(r.Kind) + "/" + r.Name }

// ParseRef reads a --workload value: kind/name.
func ParseRef(s string) (Ref, error) {
	kind, name, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok || kind == "" || name == "" {
		return Ref{}, fmt.Errorf("--workload %q is not kind/name: use e.g. deployment/web, statefulset/db or cronjob/report", s)
	}
	k, ok := ParseKind(kind)
	if !ok {
		return Ref{}, fmt.Errorf("--workload %q: unknown kind %q: use deployment, statefulset or cronjob (or deploy, sts, cj)", s, kind)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return Ref{}, fmt.Errorf("--workload %q: %q is not a valid object name: %s", s, name, strings.Join(errs, "; "))
	}
	return Ref{Kind: k, Name: name}, nil
}
