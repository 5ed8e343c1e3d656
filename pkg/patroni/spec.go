package patroni

import (
	"context"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Spec describes the wait-patroni step binary. Placeholder until the phase lands.
func Spec() step.Spec {
	return step.Spec{
		Name:  "wait-patroni",
		Usage: "wait-patroni phase",
		Run: func(context.Context, *step.Env) error {
			return failure.Permanentf("wait-patroni is not implemented yet")
		},
	}
}
