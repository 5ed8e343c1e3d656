package podaddr

import _ "embed"

// RoleYAML is the namespaced Role the lookup needs (rbac/role.yaml), for the
// manifests and for the tests that look pods up with exactly these permissions.
//
//go:embed rbac/role.yaml
var RoleYAML []byte
