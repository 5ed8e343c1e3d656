// Package db holds the fault tests of the database steps (wait-for-db, migrate)
// against a real PostgreSQL: the migrate binary killed with SIGKILL at seeded
// random points, PostgreSQL restarted while the steps run, concurrent migrators,
// and the migration lock's connection ended under a running migrator. Every
// captured output is scanned for the passwords in use. -short skips them.
package db

import (
	"testing"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

func TestMain(m *testing.M) { pgenv.Main(m) }
