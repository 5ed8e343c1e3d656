package pgenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pdeath"
)

// BinDir is where Debian installs PostgreSQL 15.
const BinDir = "/usr/lib/postgresql/15/bin"

// Options configure a server.
type Options struct {
	// Listen is the address to listen on; default 127.0.0.1.
	Listen string
	// Port to listen on; 0 picks a free one.
	Port int
	// Settings are extra postgresql.conf settings (name → value).
	Settings map[string]string
	// AllowCIDRs are client networks (e.g. the pod network) allowed in with a
	// password, besides 127.0.0.1.
	AllowCIDRs []string
}

// Server is a running PostgreSQL.
type Server struct {
	Dir string // holds data/, the socket and the log
	Endpoint
	opts     Options
	cmd      *exec.Cmd
	exited   chan struct{}
	uid, gid int
}

var dbCounter atomic.Int64

// Start initialises and starts a server. The caller must Stop it.
func Start(opts Options) (*Server, error) {
	if _, err := os.Stat(filepath.Join(BinDir, "postgres")); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 is not installed (%s): run test/install-deps.sh", BinDir)
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1"
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("user postgres: %w (install postgresql-15)", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	dir, err := os.MkdirTemp("", "chartreuse-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Endpoint: Endpoint{Host: opts.Listen, Password: randomHex(12)}, opts: opts, uid: uid, gid: gid}
	if err := s.init(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.StartServer(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) asPostgres(cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)},
		Setpgid:    true,
	}
	cmd.Dir = s.Dir
	return cmd
}

func (s *Server) init() error {
	if err := os.Chown(s.Dir, s.uid, s.gid); err != nil {
		return err
	}
	pwfile := filepath.Join(s.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Chown(pwfile, s.uid, s.gid); err != nil {
		return err
	}
	out, err := s.asPostgres(exec.Command(filepath.Join(BinDir, "initdb"),
		"-D", filepath.Join(s.Dir, "data"), "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
	)).CombinedOutput()
	os.Remove(pwfile)
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if len(s.opts.AllowCIDRs) > 0 {
		hba, err := os.OpenFile(filepath.Join(s.Dir, "data", "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer hba.Close()
		for _, cidr := range s.opts.AllowCIDRs {
			if _, _, err := net.ParseCIDR(cidr); err != nil {
				return fmt.Errorf("pgenv: AllowCIDRs: %w", err)
			}
			fmt.Fprintf(hba, "host all all %s scram-sha-256\n", cidr)
		}
	}
	return nil
}

// StartServer starts (or restarts) the postmaster on the existing data directory,
// keeping the port, and waits until it accepts connections.
func (s *Server) StartServer() error {
	if s.Port == 0 {
		s.Port = s.opts.Port
	}
	if s.Port == 0 {
		p, err := freePort(s.Host)
		if err != nil {
			return err
		}
		s.Port = p
	}
	args := []string{"-D", filepath.Join(s.Dir, "data"),
		"-c", "listen_addresses=" + s.Host, "-p", strconv.Itoa(s.Port),
		"-c", "unix_socket_directories=" + s.Dir,
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning",
	}
	for k, v := range s.opts.Settings {
		args = append(args, "-c", k+"="+v)
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := s.asPostgres(exec.Command(filepath.Join(BinDir, "postgres"), args...))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Immediate shutdown if the test process dies without stopping it (go
	// test -timeout): the server would outlive the run and its data directory.
	if err := pdeath.Start(cmd, syscall.SIGQUIT); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(ch chan struct{}) { _ = cmd.Wait(); close(ch) }(s.exited)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited during start-up:\n%s", s.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections within 30s: %v\n%s", err, s.LogTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopServer stops the postmaster (fast shutdown) and keeps the data directory.
func (s *Server) StopServer() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	s.StopServer()
	os.RemoveAll(s.Dir)
}

// PID of the running postmaster, 0 when stopped.
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// CreateDatabase creates a database with a unique name built from prefix and returns
// the name. Database names are limited to 63 bytes.
func (s *Server) CreateDatabase(ctx context.Context, prefix string) (string, error) {
	name := sanitize(prefix)
	suffix := fmt.Sprintf("_%d_%s", dbCounter.Add(1), randomHex(3))
	if len(name)+len(suffix) > 63 {
		name = name[:63-len(suffix)]
	}
	name += suffix
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return name, nil
}

// DropDatabase drops a database, ending its sessions first.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	return s.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	if b.Len() == 0 {
		return "db"
	}
	return b.String()
}

// LogTail returns the end of the server log.
func (s *Server) LogTail() string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
	if err != nil {
		return ""
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ErrNotRoot is returned where starting a server needs root (to run as postgres).
var ErrNotRoot = errors.New("the test PostgreSQL is started as the postgres user, which needs root")
