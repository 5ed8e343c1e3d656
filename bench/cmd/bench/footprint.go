package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

type footprint struct {
	sizes       map[string]int64 // binary → bytes
	image       int64            // image tarball bytes (0: not built)
	imageNote   string
	waitPatroni *series
}

func sectionFootprint(ctx context.Context, c *config, srv *pgenv.Server, rep *report) error {
	logf("section 4: footprint")
	fp := &footprint{sizes: map[string]int64{}}
	for _, s := range stepbin.Steps {
		st, err := os.Stat(c.bin(s))
		if err != nil {
			return err
		}
		fp.sizes[s] = st.Size()
	}
	if _, err := os.Stat(filepath.Join(c.repo, "images", "build", "cmd")); err == nil {
		out := filepath.Join(c.work, "image.tar")
		cmd := exec.CommandContext(ctx, "go", "run", "./images/build/cmd", "-o", out, "-repo", c.repo)
		cmd.Dir = c.repo
		if b, err := cmd.CombinedOutput(); err != nil {
			fp.imageNote = "images/build failed: " + strings.TrimSpace(tail(string(b), 300))
		} else if st, err := os.Stat(out); err == nil {
			fp.image = st.Size()
		}
	} else {
		fp.imageNote = "images/build/cmd does not exist yet: image not measured"
	}
	if srv != nil {
		s, err := waitPatroniRSS(ctx, c, srv)
		if err != nil {
			return err
		}
		fp.waitPatroni = s
	}
	rep.footprint = fp
	return nil
}
