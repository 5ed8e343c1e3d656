package workload

import (
	"context"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// ScaleDownSpec describes the scale-down step binary. Placeholder until the phase lands.
func ScaleDownSpec() step.Spec {
	return step.Spec{Name: "scale-down", Usage: "scale-down phase", Run: func(context.Context, *step.Env) error {
		return failure.Permanentf("scale-down is not implemented yet")
	}}
}

// ScaleRestoreSpec describes the scale-restore step binary. Placeholder until the phase lands.
func ScaleRestoreSpec() step.Spec {
	return step.Spec{Name: "scale-restore", Usage: "scale-restore phase", Run: func(context.Context, *step.Env) error {
		return failure.Permanentf("scale-restore is not implemented yet")
	}}
}
