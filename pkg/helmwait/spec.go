package helmwait

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Options are the helm-wait step's own flags.
type Options struct {
	RunFile       string
	Revision      int
	CheckDeclared bool
	HookUID       string

	run *Run // read from RunFile by Validate
}

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "run-file", Usage: "the run to create: the Workflow or PipelineRun YAML the chart renders (the hook Job mounts its ConfigMap there) (required)", Destination: &o.RunFile},
		&cli.IntFlag{Name: "revision", Usage: "the Helm release's revision, {{ .Release.Revision }}: the run is named <generateName><revision>, so a retried hook follows the run it created instead of starting another (required, at least 1)", Destination: &o.Revision},
		&cli.StringFlag{Name: "hook-uid", Usage: "the uid of the hook Job this runs in (the chart passes its pod's batch.kubernetes.io/controller-uid label): recorded on the run it creates, and a run of that name another Job created (an earlier install of a release of the same name: Helm counts revisions from 1 again after an uninstall) is refused (exit 1) instead of followed; empty: not recorded, not checked", Destination: &o.HookUID},
		&cli.BoolFlag{Name: "check-declared", Usage: "before creating the run, refuse (exit 1) a run that sets a parameter the installed WorkflowTemplate / Pipeline does not declare: in a pre-upgrade hook they are still the previous release's", Destination: &o.CheckDeclared},
	}
}

// Validate implements step.Options: the flags are present and the run file is a run.
func (o *Options) Validate() error {
	if o.RunFile == "" {
		return fmt.Errorf("--run-file is required: the Workflow or PipelineRun YAML to create (the chart's hook mounts it)")
	}
	if o.Revision < 1 {
		return fmt.Errorf("--revision %d is not valid: pass the Helm release's revision ({{ .Release.Revision }}), at least 1", o.Revision)
	}
	b, err := os.ReadFile(o.RunFile)
	if err != nil {
		return failure.Usagef("--run-file %s cannot be read: %v", o.RunFile, err)
	}
	r, err := Parse(b)
	if err != nil {
		return failure.Usagef("--run-file %s: %v", o.RunFile, err)
	}
	o.run = r
	return nil
}

// Spec describes the helm-wait step binary.
func Spec() step.Spec {
	ko := &kube.Options{}
	o := &Options{}
	return step.Spec{
		Name:  "helm-wait",
		Usage: "create the run of a Helm release's revision and wait until it ends (the chart's hook Job)",
		Description: "Run by the hook Job of the Helm chart charts/chartreuse. It creates the Workflow (Argo) or PipelineRun (Tekton) of --run-file " +
			"under the name <generateName><revision>, or, when a run of that name exists for this revision and this hook Job (--hook-uid; the hook's pod was retried), follows that one: " +
			"one revision never starts two migrations. It follows the run with a watch until it ends, logging each step as it starts and ends and, " +
			"on Argo, the run holding the database's mutex while this one waits, and exits 0 when the run succeeded, else 1 naming the run, its failed steps " +
			"and the command that shows it. It never stops or deletes a run. With --check-declared it first refuses (exit 1) a run the installed " +
			"WorkflowTemplate or Pipeline cannot take. " +
			"Results: run (the run's name), phase (Argo's phase or Tekton's reason at its end), created (false: the run existed already).",
		Options: []step.Options{kubeOptions{ko}, o},
		Run: func(ctx context.Context, env *step.Env) error {
			klog.SetSlogLogger(env.Log.With("component", "client-go"))
			c, err := ko.Connect("chartreuse/helm-wait")
			if err != nil {
				return err
			}
			dyn, err := dynamic.NewForConfig(c.Config)
			if err != nil {
				return failure.Permanentf("creating Kubernetes client: %w", err)
			}
			env.Log.Info("using cluster", "server", c.Config.Host, "namespace", c.Namespace)
			w := &Waiter{Client: dyn, Namespace: c.Namespace, Log: env.Log, HookUID: o.HookUID}
			if o.CheckDeclared {
				if err := w.CheckDeclared(ctx, o.run); err != nil {
					return err
				}
			}
			res, err := w.CreateAndWait(ctx, o.run, o.Revision)
			env.Results.Set("run", res.Name)
			env.Results.Set("phase", res.Phase)
			env.Results.Set("created", strconv.FormatBool(res.Created))
			return err
		},
	}
}

// kubeOptions are kube.Options with --namespace described for the waiter.
type kubeOptions struct{ *kube.Options }

func (k kubeOptions) Flags() []cli.Flag {
	flags := k.Options.Flags()
	for _, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "namespace" {
			sf.Usage = "namespace to create the run in, where the WorkflowTemplate / Pipeline is installed (default: the pod's own namespace in a cluster, else the kubeconfig context's)"
		}
	}
	return flags
}
