package databases

import _ "embed"

// RoleYAML is the namespaced Role the check-databases step needs (rbac/role.yaml),
// for the manifests and for the tests that run the step with exactly these
// permissions.
//
//go:embed rbac/role.yaml
var RoleYAML []byte
