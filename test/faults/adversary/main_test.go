package adversary

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// owner is the login role the migrators use; each run's database belongs to it.
const owner = "adversary_owner"

// server is one PostgreSQL of the pool. A run has its server to itself, so a
// restart it causes disturbs no other run.
type server struct {
	*pgenv.Server
	id       int
	password string // of owner
}

// servers hands out the pool's servers, one run at a time each.
var servers chan *server

var allServers []*server

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "adversary:", pgenv.ErrNotRoot)
		os.Exit(1)
	}
	n := envInt("ADVERSARY_WORKERS", 3)
	servers = make(chan *server, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var startErr error
	for i := range n {
		wg.Go(func() {
			s, err := startServer(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				startErr = err
			}
			if s != nil {
				allServers = append(allServers, s)
			}
		})
	}
	wg.Wait()
	code := 1
	if startErr != nil {
		fmt.Fprintln(os.Stderr, "adversary:", startErr)
	} else {
		for _, s := range allServers {
			servers <- s
		}
		code = m.Run()
	}
	for _, s := range allServers {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- PostgreSQL %d log (tests failed):\n%s\n", s.id, s.LogTail())
		}
		s.Stop()
	}
	os.Exit(code)
}

func startServer(id int) (*server, error) {
	// Crashes are part of the attack, so a commit must survive one, as in
	// production (pgenv turns synchronous_commit off for speed; fsync stays off,
	// only the OS losing its cache would matter); a short checkpoint interval
	// keeps crash recovery quick.
	s, err := pgenv.Start(pgenv.Options{Settings: map[string]string{"synchronous_commit": "on", "checkpoint_timeout": "30s"}})
	if err != nil {
		return nil, err
	}
	if err := checkSetting(s, "synchronous_commit", "on"); err != nil {
		s.Stop()
		return nil, err
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	srv := &server{Server: s, id: id, password: hex.EncodeToString(b)}
	if err := s.Exec(context.Background(), "postgres",
		"CREATE ROLE "+pgx.Identifier{owner}.Sanitize()+" LOGIN PASSWORD '"+srv.password+"'"); err != nil {
		s.Stop()
		return nil, err
	}
	return srv, nil
}

// needServers skips the test under -short.
func needServers(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("attacks a real PostgreSQL (skipped with -short)")
	}
}

// takeServer gives the test a server of the pool until it ends.
func takeServer(t *testing.T) *server {
	t.Helper()
	needServers(t)
	s := <-servers
	t.Cleanup(func() {
		if s.PID() == 0 { // a restart failed halfway: bring it back for the next run
			if err := s.StartServer(); err != nil {
				t.Errorf("restarting PostgreSQL %d: %v", s.id, err)
			}
		}
		servers <- s
	})
	return s
}

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "adversary: %s=%q is not a positive number; using %d\n", name, v, def)
		return def
	}
	return n
}

func checkSetting(s *pgenv.Server, name, want string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var got string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("the test server runs with %s = %s, want %s", name, got, want)
	}
	return nil
}
