package workload

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// onConflict runs fn until it succeeds, fails with anything but a 409 Conflict, or
// conflictBackoff is spent (then the last conflict is returned). Not client-go's
// retry.OnError: that one returns nil when fn fails with a context error, because
// wait.Interrupted matches context errors and no conflict was seen before — an
// interrupted run would then report success for work it did not do.
func onConflict(ctx context.Context, fn func() error) error {
	b := conflictBackoff
	for {
		err := fn()
		if err == nil || !apierrors.IsConflict(err) || b.Steps <= 1 {
			return err
		}
		t := time.NewTimer(b.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("retrying after a conflict: %w", ctx.Err())
		case <-t.C:
		}
	}
}
