package runwatch

import _ "embed"

// RoleYAML is the namespaced Role the watch needs (rbac/role.yaml): migrate's
// ServiceAccount holds it with its other rules.
//
//go:embed rbac/role.yaml
var RoleYAML []byte
