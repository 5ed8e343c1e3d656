// Package rbacrules is what the RBAC tests share: the scale steps' Role as the code
// documents it (pkg/workload/rbac/role.yaml), Argo's executor's rules, and a flat form
// of a rule list that two lists can be compared in.
package rbacrules
