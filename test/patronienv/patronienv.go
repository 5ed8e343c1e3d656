package patronienv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chartreuse-go/chartreuse/test/pdeath"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// Binaries from the Debian packages etcd-server, patroni and postgresql-15.
const (
	EtcdBin    = "/usr/bin/etcd"
	PatroniBin = "/usr/bin/patroni"
	PGBinDir   = "/usr/lib/postgresql/15/bin"
)

// MemberName is the name of the cluster's only member, as /cluster reports it.
const MemberName = "pg0"

// StartTimeout bounds the bootstrap; it takes well under 20 s on an idle machine.
var StartTimeout = 120 * time.Second

// Cluster is a running single-member Patroni cluster.
type Cluster struct {
	Dir            string // holds etcd/, data/, the sockets, the config and the logs
	pgenv.Endpoint        // PostgreSQL: 127.0.0.1, its port, the superuser's password
	RESTPort       int    // Patroni REST API
	EtcdPort       int    // etcd client port

	uid, gid int
	etcd     *proc
	patroni  *proc
}

// proc is a child process and the channel closed when it has been reaped.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts etcd, then Patroni, and waits until Patroni's REST API answers
// GET /primary with 200. On error everything started so far is stopped.
func Start(ctx context.Context) (*Cluster, error) {
	for _, bin := range []string{EtcdBin, PatroniBin, filepath.Join(PGBinDir, "postgres")} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("%s is missing: install etcd-server, patroni and postgresql-15 (test/install-deps.sh)", bin)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("patronienv runs etcd and Patroni as the postgres user, which needs root")
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("user postgres: %w (install postgresql-15)", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	dir, err := os.MkdirTemp("", "chartreuse-patroni-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Endpoint: pgenv.Endpoint{Host: "127.0.0.1", Password: randomHex(12)}, uid: uid, gid: gid}
	if err := c.start(ctx); err != nil {
		if serr := c.Stop(); serr != nil {
			err = fmt.Errorf("%w (and stopping: %v)", err, serr)
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	if err := os.Chown(c.Dir, c.uid, c.gid); err != nil {
		return err
	}
	ports, err := freePorts(c.Host, 4)
	if err != nil {
		return err
	}
	c.EtcdPort, c.RESTPort, c.Port = ports[0], ports[1], ports[2]
	peer := "http://" + net.JoinHostPort(c.Host, strconv.Itoa(ports[3]))
	client := "http://" + net.JoinHostPort(c.Host, strconv.Itoa(c.EtcdPort))

	c.etcd, err = c.run("etcd", EtcdBin,
		"--name", "etcd0", "--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "etcd0="+peer, "--initial-cluster-state", "new",
		"--initial-cluster-token", "chartreuse-"+randomHex(4),
		"--log-level", "warn")
	if err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, client+"/health", c.etcd); err != nil {
		return fmt.Errorf("etcd did not become healthy: %w\n%s", err, c.LogTail("etcd"))
	}

	conf := filepath.Join(c.Dir, "patroni.yml")
	if err := c.writeFile(conf, c.config()); err != nil {
		return err
	}
	c.patroni, err = c.run("patroni", PatroniBin, conf)
	if err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, c.RESTURL()+"/primary", c.patroni); err != nil {
		return fmt.Errorf("patroni did not report a primary: %w\n%s", err, c.LogTail("patroni"))
	}
	return nil
}

// config is Patroni's YAML configuration, written as JSON (a subset of YAML) so
// every value is quoted correctly.
func (c *Cluster) config() []byte {
	hostPort := func(p int) string { return net.JoinHostPort(c.Host, strconv.Itoa(p)) }
	cfg := map[string]any{
		"scope":     "chartreuse-" + randomHex(4),
		"namespace": "/chartreuse-test/",
		"name":      MemberName,
		"log":       map[string]any{"level": "INFO"},
		"restapi":   map[string]any{"listen": hostPort(c.RESTPort), "connect_address": hostPort(c.RESTPort)},
		"etcd3":     map[string]any{"hosts": hostPort(c.EtcdPort)},
		"bootstrap": map[string]any{
			// loop_wait + 2*retry_timeout must stay below ttl.
			"dcs": map[string]any{"ttl": 30, "loop_wait": 2, "retry_timeout": 10,
				"postgresql": map[string]any{"use_pg_rewind": false}},
			"initdb": []any{map[string]any{"encoding": "UTF8"}, map[string]any{"locale": "C.UTF-8"}, "no-sync"},
		},
		"postgresql": map[string]any{
			"listen":          hostPort(c.Port),
			"connect_address": hostPort(c.Port),
			"data_dir":        filepath.Join(c.Dir, "data"),
			"bin_dir":         PGBinDir,
			"pgpass":          filepath.Join(c.Dir, "pgpass"),
			"use_unix_socket": true,
			"authentication": map[string]any{
				"superuser":   map[string]any{"username": "postgres", "password": c.Password},
				"replication": map[string]any{"username": "replicator", "password": randomHex(12)},
			},
			"parameters": map[string]any{
				"unix_socket_directories": c.Dir,
				"fsync":                   "off",
				"full_page_writes":        "off",
				"synchronous_commit":      "off",
				"shared_buffers":          "32MB",
			},
			"pg_hba": []string{
				"local all all trust",
				"host all all 127.0.0.1/32 scram-sha-256",
				"host all all 127.0.0.1/32 md5",
				"host replication replicator 127.0.0.1/32 scram-sha-256",
			},
		},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

func (c *Cluster) writeFile(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	return os.Chown(path, c.uid, c.gid)
}

// run starts bin as the postgres user in its own process group, logging to
// <Dir>/<name>.log.
func (c *Cluster) run(name, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = c.Dir
	// A clean environment: no pyenv shims or PG* variables from the test process.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + c.Dir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid)},
		Setpgid:    true,
	}
	// If the test process dies without cleaning up (e.g. go test -timeout),
	// the children get SIGTERM: Patroni then stops PostgreSQL itself.
	if err := pdeath.Start(cmd, syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// waitHTTP polls url until it answers 200, the process exits or the time is up.
func (c *Cluster) waitHTTP(ctx context.Context, url string, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %v", StartTimeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// RESTURL is the base URL of Patroni's REST API.
func (c *Cluster) RESTURL() string {
	return "http://" + net.JoinHostPort(c.Host, strconv.Itoa(c.RESTPort))
}

// PIDs of the running etcd and patroni processes (0 when not running).
func (c *Cluster) PIDs() (etcd, patroni int) {
	return c.etcd.pid(), c.patroni.pid()
}

func (p *proc) pid() int {
	if p == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Stop stops Patroni with SIGTERM (it stops PostgreSQL), then etcd, each by PID,
// and removes the directory. Processes that do not stop in time are killed with
// their process group; that, or anything left behind, is reported as an error.
func (c *Cluster) Stop() error {
	var errs []error
	errs = append(errs, c.patroni.stop(45*time.Second))
	errs = append(errs, c.stopPostmaster())
	errs = append(errs, c.etcd.stop(20*time.Second))
	if c.Dir != "" {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stop sends SIGTERM to the process and waits; then kills whatever is left of its
// process group (e.g. a postmaster orphaned by a killed Patroni).
func (p *proc) stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	var err error
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
			err = fmt.Errorf("%s (pid %d) did not stop within %s of SIGTERM: killed", p.name, pid, grace)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	// Setpgid made the group id equal to the pid; signal 0 finds any survivor.
	if syscall.Kill(-pid, 0) == nil {
		// Give children a moment to finish their own shutdown.
		for i := 0; i < 50 && syscall.Kill(-pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(-pid, 0) == nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			err = errors.Join(err, fmt.Errorf("processes of %s's group %d were still running: killed", p.name, pid))
		}
	}
	return err
}

// stopPostmaster stops a PostgreSQL that outlived Patroni. Patroni starts the
// postmaster in its own session, so the process-group check does not see it.
func (c *Cluster) stopPostmaster() error {
	b, err := os.ReadFile(filepath.Join(c.Dir, "data", "postmaster.pid"))
	if err != nil {
		return nil // not running (a clean shutdown removes the file)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGINT) // fast shutdown
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(200 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return fmt.Errorf("postmaster %d outlived Patroni and ignored SIGINT: killed", pid)
	}
	return fmt.Errorf("postmaster %d outlived Patroni: stopped it", pid)
}

// LogTail returns the end of a process's log ("etcd" or "patroni").
func (c *Cluster) LogTail(name string) string {
	b, err := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return ""
	}
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return "--- " + name + " log:\n" + strings.TrimSpace(string(b))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts finds n distinct free ports by holding them open together.
func freePorts(host string, n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
