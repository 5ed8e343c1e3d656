package patroni

import (
	"testing"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

func TestMain(m *testing.M) { pgenv.Main(m) }
