package gate

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Actions of the gate step.
const (
	ActionAcquire = "acquire"
	ActionRelease = "release"
	// ActionSettle is Argo's: wait until the workflow's stopped steps have ended.
	ActionSettle = "settle"
	// ActionTurn is Tekton's, for a run over several databases: wait for this
	// TaskRun's turn among the run's migrate (or rollback) TaskRuns.
	ActionTurn = "turn"
)

// Results of --action=turn, step results its TaskRun's next step is guarded by.
const (
	ResultGo  = "go"
	ResultWhy = "why"
	// ResultRunCreated (acquire): when the PipelineRun was created, RFC 3339,
	// the --run-created of the steps that hold or let go of workloads (Tekton
	// has no variable for it).
	ResultRunCreated = "run-created"
)

// Options are the gate step's own flags.
type Options struct {
	Action         string
	DatabaseSecret string
	// SecretsFile holds a JSON list of database Secrets (check-databases'
	// secrets result): a run over several databases.
	SecretsFile       string
	WorkloadNamespace string
	secrets           []string
	RunName           string
	RunUID            string
	TaskRun           string
	PodSelector       string
	Timeout           time.Duration
	PollInterval      time.Duration
	ProgressEvery     time.Duration
	OutageTolerance   time.Duration
	Durations         durationChecks // --check-duration
	Positive          durationChecks // --check-positive-duration
	Wait              durationChecks // --check-wait-duration
	Timeouts          durationChecks // --check-timeout-duration
	RunID             runIDCheck     // --check-run-id
	// turn
	PipelineTask string
	Parallelism  int
	Canary       bool
	KeepGoing    bool
	Order        []string // the arguments after the flags
}

// TakeArgs implements step.ArgsTaker: turn's order, one Secret per argument.
func (o *Options) TakeArgs(args []string) { o.Order = args }

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "action", Value: ActionAcquire, Usage: "acquire: take the gate, waiting while another run holds it; release: free it if this run holds it, once the run's other tasks have stopped; settle (Argo's exit handler): wait until the workflow's pods outside its exit handler have stopped", Destination: &o.Action},
		&cli.StringFlag{Name: "database-secret", Usage: "name of the Secret holding the database URL: the gate is the Lease chartreuse-<name> (required, but for settle)", Destination: &o.DatabaseSecret},
		&cli.StringFlag{Name: "database-secrets-file", Usage: "a run over several databases: a file holding the JSON list of their Secrets (check-databases' secrets result); the gate is then the Lease chartreuse.workloads.<workload-namespace>, then chartreuse-<name> for each, in sorted order (in place of --database-secret)", Destination: &o.SecretsFile},
		&cli.StringFlag{Name: "workload-namespace", Usage: "with --database-secrets-file: the namespace of the workloads the run stops (default: the gate's namespace)", Destination: &o.WorkloadNamespace},
		&cli.StringFlag{Name: "run-name", Usage: "this PipelineRun's name, $(context.pipelineRun.name); settle: the workflow's, {{workflow.name}} (required)", Destination: &o.RunName},
		&cli.StringFlag{Name: "run-uid", Usage: "this PipelineRun's uid, $(context.pipelineRun.uid): the holder identity; settle: the workflow's, {{workflow.uid}} (required)", Destination: &o.RunUID},
		&cli.StringFlag{Name: "pod-selector", Usage: "settle: only the workflow's pods that also match this label selector (the WorkflowTemplate: chartreuse.io/changes-database=true)", Destination: &o.PodSelector},
		&cli.StringFlag{Name: "task-run", Usage: "this step's TaskRun, $(context.taskRun.name): release does not wait for it", Destination: &o.TaskRun},
		&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "acquire: how long to wait while another run holds the gate (then exit 75, naming it); release: how long to wait for the run's other tasks to stop (then the gate stays held until the run has finished, and the next run takes it over); settle: how long to wait for the workflow's pods to stop (then exit 75, naming them)", Destination: &o.Timeout},
		&cli.DurationFlag{Name: "poll-interval", Value: 2 * time.Second, Usage: "how often to look again while waiting", Destination: &o.PollInterval},
		&cli.DurationFlag{Name: "progress-interval", Value: 30 * time.Second, Usage: "how often to log that the step is still waiting", Destination: &o.ProgressEvery},
		&cli.GenericFlag{Name: "check-duration", Usage: "NAME=VALUE, repeatable: a duration parameter of the run that later tasks read; a value time.ParseDuration refuses, or a negative one, fails the step (exit 2) before it takes the gate", Value: &o.Durations},
		&cli.GenericFlag{Name: "check-positive-duration", Usage: "NAME=VALUE, repeatable: as --check-duration, and 0 is refused too", Value: &o.Positive},
		&cli.GenericFlag{Name: "check-wait-duration", Usage: "NAME=VALUE, repeatable: as --check-duration, from 1s to 24h (the limit of the steps' own waits)", Value: &o.Wait},
		&cli.GenericFlag{Name: "check-timeout-duration", Usage: "NAME=VALUE, repeatable: as --check-duration, 0 or at least 1s (a PostgreSQL timeout the step's own queries run under)", Value: &o.Timeouts},
		&cli.StringFlag{Name: "pipeline-task", Value: "migrate", Usage: "turn: the Pipeline task whose TaskRuns take turns (migrate, or rollback)", Destination: &o.PipelineTask},
		&cli.IntFlag{Name: "parallelism", Value: 1, Usage: "turn: how many of the task's TaskRuns may work at once, 1 to 64", Destination: &o.Parallelism},
		&cli.BoolFlag{Name: "canary", Value: true, Usage: "turn: the first Secret of the order works alone before any other starts", Destination: &o.Canary},
		&cli.DurationFlag{Name: "outage-tolerance", Value: 10 * time.Minute, Usage: "turn: how long the API server may stay unavailable (5xx, 429, unreachable) while the step waits for its turn, which it then waits out; past it the step fails (exit 75)", Destination: &o.OutageTolerance},
		&cli.BoolFlag{Name: "keep-going", Usage: "turn: a failed TaskRun of the task stops no other and ends its turn (rollbacks); without it none starts once one has failed", Destination: &o.KeepGoing},
		&cli.GenericFlag{Name: "check-run-id", Usage: "the run's run-id parameter: blank (after trimming), longer than 253 characters or more than one line fails the step (exit 2) before it takes the gate", Value: &o.RunID},
	}
}

// Validate implements step.Options.
func (o *Options) Validate() error {
	if o.Action != ActionAcquire && o.Action != ActionRelease && o.Action != ActionSettle && o.Action != ActionTurn {
		return fmt.Errorf("--action %q is not valid: use %s, %s, %s or %s", o.Action, ActionAcquire, ActionRelease, ActionSettle, ActionTurn)
	}
	if o.Action == ActionSettle {
		if o.RunName == "" || o.RunUID == "" {
			return errNoWorkflow
		}
		if o.Timeout <= 0 || o.PollInterval <= 0 {
			return fmt.Errorf("--timeout and --poll-interval must be positive")
		}
		if _, err := labels.Parse(o.PodSelector); err != nil {
			return fmt.Errorf("--pod-selector %q is not a label selector: %w", o.PodSelector, err)
		}
		return nil
	}
	if o.Action == ActionTurn {
		return o.validateTurn()
	}
	if len(o.Order) > 0 && o.Action == ActionSettle {
		return fmt.Errorf("--action=%s takes no arguments after the flags (%d given)", o.Action, len(o.Order))
	}
	if err := o.validateSecrets(); err != nil {
		return err
	}
	if o.RunName == "" || o.RunUID == "" {
		return errNoRun
	}
	if o.Timeout <= 0 || o.PollInterval <= 0 {
		return fmt.Errorf("--timeout and --poll-interval must be positive")
	}
	o.Positive.positive, o.Wait.wait, o.Timeouts.timeout = true, true, true
	return checkValues(&o.RunID, &o.Wait, &o.Positive, &o.Timeouts, &o.Durations)
}

// validateTurn checks turn's flags and order.
func (o *Options) validateTurn() error {
	if o.RunName == "" || o.RunUID == "" {
		return errNoRun
	}
	if err := validSecret("--database-secret", o.DatabaseSecret); err != nil {
		return err
	}
	if o.Parallelism < 1 || o.Parallelism > 64 {
		return fmt.Errorf("--parallelism %d is not from 1 to 64", o.Parallelism)
	}
	if o.PollInterval <= 0 || o.OutageTolerance <= 0 {
		return fmt.Errorf("--poll-interval and --outage-tolerance must be positive")
	}
	if errs := validation.IsDNS1123Label(o.PipelineTask); len(errs) > 0 {
		return fmt.Errorf("--pipeline-task %q is not a Pipeline task name: %s", o.PipelineTask, strings.Join(errs, "; "))
	}
	seen := map[string]bool{}
	for _, s := range o.Order {
		if err := validSecret("the order", s); err != nil {
			return err
		}
		if seen[s] {
			return fmt.Errorf("the order names the Secret %q twice: pass rounds' order result unchanged", s)
		}
		seen[s] = true
	}
	if !seen[o.DatabaseSecret] {
		return fmt.Errorf("--database-secret %q is not in the order after the flags (%d Secrets): pass rounds' order result and this TaskRun's Secret", o.DatabaseSecret, len(o.Order))
	}
	return nil
}

// validateSecrets checks --database-secret, or reads --database-secrets-file.
func (o *Options) validateSecrets() error {
	if len(o.Order) > 0 {
		// a run over several databases, its Secrets after the flags (Tekton
		// hands check-databases' secrets result so)
		if o.DatabaseSecret != "" || o.SecretsFile != "" {
			return fmt.Errorf("the Secrets after the flags and --database-secret or --database-secrets-file were both given: give one")
		}
		o.secrets = o.Order
		for _, s := range o.secrets {
			if err := validSecret("the Secrets after the flags", s); err != nil {
				return err
			}
		}
		return o.validWorkloadNamespace()
	}
	if o.SecretsFile == "" {
		if o.WorkloadNamespace != "" {
			return fmt.Errorf("--workload-namespace is only for a run over several databases: give --database-secrets-file too, or leave it out")
		}
		if o.DatabaseSecret == "" {
			return fmt.Errorf("--database-secret is required: the gate is named after the database Secret")
		}
		return validSecret("--database-secret", o.DatabaseSecret)
	}
	if o.DatabaseSecret != "" {
		return fmt.Errorf("--database-secret and --database-secrets-file were both given: give one (a run over several databases takes the file)")
	}
	b, err := os.ReadFile(o.SecretsFile)
	if err != nil {
		return fmt.Errorf("--database-secrets-file: %w (the check-databases step writes it before the gate)", err)
	}
	if err := json.Unmarshal(b, &o.secrets); err != nil {
		return fmt.Errorf("--database-secrets-file %s is not a JSON list of Secret names: %w", o.SecretsFile, err)
	}
	if len(o.secrets) == 0 {
		return fmt.Errorf("--database-secrets-file %s lists no Secret: a run over several databases needs at least one", o.SecretsFile)
	}
	for _, s := range o.secrets {
		if err := validSecret("--database-secrets-file", s); err != nil {
			return err
		}
	}
	return o.validWorkloadNamespace()
}

// validWorkloadNamespace checks --workload-namespace of a run over several databases.
func (o *Options) validWorkloadNamespace() error {
	if o.WorkloadNamespace != "" {
		if errs := validation.IsDNS1123Label(o.WorkloadNamespace); len(errs) > 0 {
			return fmt.Errorf("--workload-namespace %q is not a valid namespace: %s", o.WorkloadNamespace, strings.Join(errs, "; "))
		}
	}
	return nil
}

func validSecret(flag, name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("%s %q is not a valid Secret name: %s", flag, name, strings.Join(errs, "; "))
	}
	return nil
}

// namespaceUsage replaces kube.Options' wording: the gate lives beside the run.
const namespaceUsage = "namespace of the PipelineRun and its gate Lease (default: the pod's own namespace in a cluster, else the kubeconfig context's)"

// Spec describes the gate step binary.
func Spec() step.Spec {
	ko := &kube.Options{}
	o := &Options{}
	return step.Spec{
		Name:  "gate",
		Usage: "let one Tekton run at a time work on a database; let an Argo run end only once its database steps have",
		Description: "acquire first refuses (exit 2) a PipelineRun that sets a param its Pipeline (status.pipelineSpec) does not declare, naming it; then it takes the Lease chartreuse-<database-secret> in the run's namespace for this PipelineRun (holder: its uid), " +
			"or proceeds when this run already holds it; while another run holds it, it waits, and exits 75 naming that run after --timeout. " +
			"A run over several databases (--database-secrets-file) takes the Lease chartreuse.workloads.<workload-namespace> first, then chartreuse-<secret> for each of its Secrets in sorted order, the order every run takes them in; " +
			"when it gives up it keeps those it took, which its release frees. The Secrets may also be given after the flags, one argument each (Tekton hands an array result so). " +
			"A holder whose PipelineRun is gone or finished is taken over once its TaskRuns and pods have stopped. " +
			"release deletes the Leases this run holds, after the run's other TaskRuns and pods have stopped. Argo needs none of this: its mutex does the same. " +
			"settle is for Argo's exit handler: Argo ends a stopped step (argo stop) before its pod has, and frees the mutex when the workflow ends; " +
			"settle waits until the workflow's pods outside the exit handler (those matching --pod-selector) have stopped, and exits 75 naming those still running after --timeout. " +
			"turn is for a Tekton run over several databases, the first step of each migrate (or --pipeline-task) TaskRun: given the order of the Secrets after the flags (rounds' order result), " +
			"it waits until the TaskRuns this one comes after have succeeded (with --canary the first of the order; and the one --parallelism places before it), so that at most --parallelism work at once; " +
			"it writes go=false (and why) at once when a TaskRun of the task has failed, as the run then starts no other, and go=true when its turn has come; it waits as long as those TaskRuns run. " +
			"Results: run-created (acquire: when the PipelineRun was created, RFC 3339), go (turn: true when this TaskRun may start), why (turn: why not).",
		Args:    "[SECRET...] (acquire, release: a run over several databases, its Secrets, as --database-secrets-file; turn: the order)",
		Options: []step.Options{kubeOptions{ko}, o},
		Run: func(ctx context.Context, env *step.Env) error {
			c, err := ko.ConnectStep("gate", env.Log)
			if err != nil {
				return err
			}
			dyn, err := c.Dynamic()
			if err != nil {
				return err
			}
			g := &Gate{
				Client: c.Interface, Dynamic: dyn, Namespace: c.Namespace, Secret: o.DatabaseSecret,
				Secrets: o.secrets, WorkloadNamespace: cmp.Or(o.WorkloadNamespace, c.Namespace),
				RunName: o.RunName, RunUID: o.RunUID, TaskRun: o.TaskRun, PodSelector: o.PodSelector,
				Timeout: o.Timeout, Poll: o.PollInterval, ProgressEvery: o.ProgressEvery, Outage: o.OutageTolerance, Log: env.Log,
			}
			switch o.Action {
			case ActionTurn:
				ok, why, err := g.WaitTurn(ctx, Turn{Secret: o.DatabaseSecret, Order: o.Order, Parallelism: o.Parallelism, Canary: o.Canary, Task: o.PipelineTask, KeepGoing: o.KeepGoing})
				if err != nil {
					return err
				}
				env.Results.Set(ResultGo, strconv.FormatBool(ok))
				env.Results.Set(ResultWhy, why)
				if !ok {
					env.Log.Warn(why, "secret", o.DatabaseSecret)
				} else {
					env.Log.Info("its turn", "secret", o.DatabaseSecret, "task", o.PipelineTask)
				}
				return nil
			case ActionRelease:
				return g.Release(ctx)
			case ActionSettle:
				return g.Settle(ctx)
			}
			if err := g.CheckParameters(ctx); err != nil {
				return err
			}
			env.Results.Set(ResultRunCreated, g.Created.UTC().Format(time.RFC3339))
			return g.Acquire(ctx)
		},
	}
}

// kubeOptions are kube.Options with --namespace described for the gate.
type kubeOptions struct{ *kube.Options }

func (k kubeOptions) Flags() []cli.Flag {
	flags := k.Options.Flags()
	for _, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "namespace" {
			sf.Usage = namespaceUsage
		}
	}
	return flags
}
