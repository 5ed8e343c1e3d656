package waitdb

import (
	"context"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Spec describes the wait-for-db step binary. Placeholder until the phase lands.
func Spec() step.Spec {
	return step.Spec{
		Name:  "wait-for-db",
		Usage: "wait-for-db phase",
		Run: func(context.Context, *step.Env) error {
			return failure.Permanentf("wait-for-db is not implemented yet")
		},
	}
}
