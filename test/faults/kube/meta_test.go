package kube

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

var (
	metaCreate = metav1.CreateOptions{}
	metaPatch  = metav1.PatchOptions{FieldManager: "faults-editor"}
)

var listSet = metav1.ListOptions{LabelSelector: "set=faults"}

func scaleRestoreSpec() step.Spec { return workload.ScaleRestoreSpec() }
