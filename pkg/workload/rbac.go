package workload

import _ "embed"

// RoleYAML is the namespaced Role the scale steps need (rbac/role.yaml), for the
// manifests and for the tests that run the steps with exactly these permissions.
//
//go:embed rbac/role.yaml
var RoleYAML []byte

// StoppedRoleYAML is the namespaced Role the check of RequireStopped needs
// (rbac/stopped.yaml): migrate's ServiceAccount holds it with the pod lookup's.
//
//go:embed rbac/stopped.yaml
var StoppedRoleYAML []byte
