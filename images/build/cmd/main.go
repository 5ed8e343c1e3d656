// Command cmd builds the Chartreuse image without Docker (what `make image` runs):
//
//	go run ./images/build/cmd [-o dist/chartreuse-<version>.tar] [-ref ghcr.io/chartreuse-go/chartreuse:<version>] [-arch amd64] [-migrations dir]
//
// The tarball is `docker save` format: `docker load -i`, `crane push <tar> <ref>`,
// `ctr -n k8s.io images import`. With -migrations it adds a layer with those *.sql
// files at /migrations (like an application's `FROM chartreuse` + `COPY`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"time"

	"github.com/chartreuse-go/chartreuse/images/build"
)

func main() {
	out := flag.String("o", "", "output tarball (default dist/chartreuse-<version>.tar under the repository)")
	ref := flag.String("ref", "", "image reference to tag (default ghcr.io/chartreuse-go/chartreuse:<version>)")
	arch := flag.String("arch", "", "GOARCH of the image (default this machine's)")
	repo := flag.String("repo", ".", "repository root")
	migrations := flag.String("migrations", "", "directory of *.sql files to add at /migrations")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "image: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *repo, *out, *ref, *arch, *migrations); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, repo, out, ref, arch, migrations string) error {
	start := time.Now()
	sizes := map[string]int64{}
	img, version, err := build.Image(ctx, repo, build.Options{Arch: arch, Sizes: sizes})
	if err != nil {
		return err
	}
	if migrations != "" {
		if img, err = build.WithMigrations(img, migrations); err != nil {
			return err
		}
	}
	if out == "" {
		out = filepath.Join(repo, "dist", "chartreuse-"+version+".tar")
	}
	if ref == "" {
		ref = build.DefaultRef(version)
	}
	if err := build.WriteTarball(img, ref, out); err != nil {
		return err
	}
	names := make([]string, 0, len(sizes))
	for n := range sizes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "image: %-14s %6.1f MiB\n", n, float64(sizes[n])/(1<<20))
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "image: %s (%s) -> %s, %.1f MiB, built in %s\n", ref, digest, out, float64(st.Size())/(1<<20), time.Since(start).Round(100*time.Millisecond))
	fmt.Println(out)
	return nil
}
