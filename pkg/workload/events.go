package workload

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// Event reasons.
const (
	ReasonScaledDown = "ScaledDownForMigration"
	ReasonRestored   = "RestoredAfterMigration"
	// ReasonStillHeld: scale-restore let go of a workload another run still
	// holds stopped; it is restored when that run lets go too.
	ReasonStillHeld = "StillHeldForMigration"
)

// eventComponent is the Event source.
const eventComponent = "chartreuse"

// eventTimeout bounds the write of one Event.
const eventTimeout = 5 * time.Second

// emitEvent records one Event on the workload. An Event is information for people
// running kubectl describe: failing to write one is logged, never fatal.
func emitEvent(ctx context.Context, cs kubernetes.Interface, ns string, w *Workload, now time.Time, reason, msg string, log *slog.Logger) {
	t := metav1.NewTime(now)
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: w.Name + ".", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{
			Kind: w.Kind.KindName(), APIVersion: w.Kind.APIVersion(), Namespace: ns, Name: w.Name,
			UID: w.UID, ResourceVersion: w.ResourceVersion,
		},
		Reason: reason, Message: msg, Type: corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: eventComponent},
		FirstTimestamp: t, LastTimestamp: t, Count: 1,
	}
	// Information for people: never worth more of the step's time than this.
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	if _, err := cs.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		log.Warn("could not record an Event", "workload", w.String(), "error", kube.Classify(err, "create", "events").Error())
	}
}
