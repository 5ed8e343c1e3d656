package migrate

import (
	"context"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Spec describes the migrate step binary. Placeholder until the phase lands.
func Spec() step.Spec {
	return step.Spec{
		Name:  "migrate",
		Usage: "migrate phase",
		Run: func(context.Context, *step.Env) error {
			return failure.Permanentf("migrate is not implemented yet")
		},
	}
}
