package databases

import (
	"context"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Options are the check-databases step's own flags: the list, and the run's
// single-database parameters its entries default to.
type Options struct {
	Databases string
	Defaults  Defaults

	entries []Entry // parsed by Validate
}

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	d := &o.Defaults
	return []cli.Flag{
		&cli.StringFlag{Name: "databases", Usage: "the databases of the run: a JSON list of objects with the keys name, secret, key, dir, git-url, git-revision, migrations-image, role, table, to (required)", Destination: &o.Databases},
		&cli.StringFlag{Name: "database-secret", Usage: "default of an entry's secret (the workflow's database-secret)", Destination: &d.Secret},
		&cli.StringFlag{Name: "database-secret-key", Value: "url", Usage: "default of an entry's key", Destination: &d.Key},
		&cli.StringFlag{Name: "migrations-dir", Value: "/migrations", Usage: "default of an entry's dir", Destination: &d.Dir},
		&cli.StringFlag{Name: "git-url", Usage: "default of an entry's git-url (with git-revision and migrations-image, taken only by an entry that names neither git-url nor migrations-image)", Destination: &d.GitURL},
		&cli.StringFlag{Name: "git-revision", Usage: "default of an entry's git-revision", Destination: &d.GitRevision},
		&cli.StringFlag{Name: "migrations-image", Usage: "default of an entry's migrations-image", Destination: &d.MigrationsImage},
		&cli.StringFlag{Name: "migrate-role", Usage: "default of an entry's role", Destination: &d.Role},
		&cli.StringFlag{Name: "table", Value: "goose_db_version", Usage: "default of an entry's table", Destination: &d.Table},
		&cli.StringFlag{Name: "to", Usage: "default of an entry's to", Destination: &d.To},
	}
}

// Validate implements step.Options: the list is read here, so that a bad one is a
// usage error (exit 2) before the step connects to anything.
func (o *Options) Validate() error {
	entries, err := Parse(o.Databases, o.Defaults)
	if err != nil {
		return err
	}
	if entries == nil {
		return failure.Usagef("--databases is empty: there is no list to check (a run without databases migrates database-secret alone)")
	}
	o.entries = entries
	return nil
}

// namespaceUsage replaces kube.Options' wording: the Secrets are beside the run.
const namespaceUsage = "namespace of the run and its database Secrets (default: the pod's own namespace in a cluster, else the kubeconfig context's)"

// Spec describes the check-databases step binary.
func Spec() step.Spec {
	ko := &kube.Options{}
	o := &Options{}
	return step.Spec{
		Name:  "check-databases",
		Usage: "check the list of databases a run migrates before anything else runs",
		Description: "reads --databases (a JSON list), applies the defaults (the single-database flags), and refuses (exit 2), naming every bad entry, " +
			"a list that is not a JSON list of objects, an empty one, an unknown or repeated key, a value that is not a string, an invalid Secret name or key, " +
			"two entries for one database (the same Secret and key) or with one name. It then reads each Secret and refuses (exit 1) one that does not exist, " +
			"or lacks an entry's key, or holds nothing there; it never prints a value. Results: entries (the list with the defaults applied), secrets (the distinct Secret names, sorted), count.",
		Options: []step.Options{kubeOptions{ko}, o},
		Run: func(ctx context.Context, env *step.Env) error {
			c, err := ko.ConnectStep("check-databases", env.Log)
			if err != nil {
				return err
			}
			if err := CheckSecrets(ctx, c.Interface, c.Namespace, o.entries); err != nil {
				return err
			}
			secrets := Secrets(o.entries)
			env.Results.SetJSON("entries", o.entries)
			env.Results.SetJSON("secrets", secrets)
			env.Results.Set("count", strconv.Itoa(len(o.entries)))
			env.Log.Info("databases checked", "databases", len(o.entries), "secrets", len(secrets), "namespace", c.Namespace)
			return nil
		},
	}
}

// kubeOptions are kube.Options with --namespace described for this step.
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
