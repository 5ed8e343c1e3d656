package stepbin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Module is the product's module path.
const Module = "github.com/chartreuse-go/chartreuse"

// Steps are the five step binaries.
var Steps = []string{"wait-for-db", "wait-patroni", "scale-down", "migrate", "scale-restore"}

// RepoDir finds the repository root: $CHARTREUSE_REPO, else the nearest parent of
// the working directory whose go.mod declares Module.
func RepoDir() (string, error) {
	if d := os.Getenv("CHARTREUSE_REPO"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "module "+Module {
					f.Close()
					return dir, nil
				}
			}
			f.Close()
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found: set CHARTREUSE_REPO")
		}
		dir = parent
	}
}

// Version is the repository's VERSION file, as `make build` stamps it.
func Version(repo string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repo, "VERSION"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Build builds the named steps into out exactly as `make build` does (static,
// trimmed paths, stripped, version stamped). It returns the binaries' paths by name.
func Build(ctx context.Context, repo, out string, steps ...string) (map[string]string, error) {
	v, err := Version(repo)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	args := []string{"build", "-trimpath", "-tags", "urfave_cli_no_docs", "-ldflags", "-s -w -X " + Module + "/pkg/version.Version=" + v, "-o", out + "/"}
	paths := map[string]string{}
	for _, s := range steps {
		args = append(args, "./steps/"+s)
		paths[s] = filepath.Join(out, s)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", strings.Join(steps, " "), err, b)
	}
	return paths, nil
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// Binaries builds the steps once per test process and returns their paths by
// name. They go to the repository's .cache/test-bin/<package>, kept between runs
// (nothing is left in /tmp), one directory per test package so that packages
// tested in parallel never overwrite each other's binaries.
func Binaries(t testing.TB, steps ...string) map[string]string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	var missing []string
	for _, s := range steps {
		if _, ok := buildCache[s]; !ok {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		repo, err := RepoDir()
		if err != nil {
			t.Fatal(err)
		}
		wd, _ := os.Getwd()
		rel, err := filepath.Rel(repo, wd)
		if err != nil || strings.HasPrefix(rel, "..") {
			rel = filepath.Base(wd)
		}
		dir := filepath.Join(repo, ".cache", "test-bin", strings.ReplaceAll(rel, string(filepath.Separator), "_"))
		paths, err := Build(context.Background(), repo, dir, missing...)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range paths {
			buildCache[k] = v
		}
	}
	out := map[string]string{}
	for _, s := range steps {
		out[s] = buildCache[s]
	}
	return out
}
