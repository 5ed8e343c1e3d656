package migrate

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

// scannerAnnotations is parseAnnotations as it was written with a bufio.Scanner,
// kept to check that cutting lines in place reads every file the same way.
func scannerAnnotations(b []byte) (src Source, hasUp bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	inDown := false
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(line, "--") && strings.Contains(line, "+goose") {
			cmd := strings.TrimSpace(strings.Replace(strings.ReplaceAll(line, "--", ""), "+goose", "", 1))
			switch {
			case strings.EqualFold(cmd, "Up"):
				hasUp, inDown = true, false
			case strings.EqualFold(cmd, "Down"):
				inDown = true
			case strings.EqualFold(cmd, "NO TRANSACTION"):
				src.NoTx = true
			}
			continue
		}
		if inDown && trimmed != "" && !strings.HasPrefix(trimmed, "--") {
			src.HasDown = true
		}
	}
	return src, hasUp
}

var annotationSeeds = []string{
	"",
	"\n",
	"-- +goose Up",
	"-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;",
	"-- +goose Up\r\nSELECT 1;\r\n-- +goose Down\r\nSELECT 2;\r\n",
	"-- +goose Up\r\r\n-- +goose Down\r\n\r\n",
	"-- +goose Up\n-- +goose Down\n\r",
	"-- +goose Up\n-- +goose Down\n \u00a0\u2003\n-- x\n",
	"-- +goose Up\n-- +goose Down\n\xff\n",
	"-- +goose Up\n-- +goose Down\n\xc2\n",
	"----+goose--Up--\n-- +goose +goose Down\n-- +goose Down\nx",
	"-- +goose no transaction\n-- +GOOSE UP\n",
	"-- +goose Down\nSELECT 1;\n-- +goose Up\n",
	"\n\n-- +goose Up\n\n\n-- +goose Down\n\n\n",
}

func TestParseAnnotationsMatchesScanner(t *testing.T) {
	for _, s := range annotationSeeds {
		checkAnnotations(t, []byte(s))
	}
	// A line the scanner could not hold ended its reading: what follows is ignored.
	long := strings.Repeat("x", maxAnnotationLine)
	for _, s := range []string{
		"-- +goose Up\n-- +goose Down\n" + long + "\nSELECT 1;\n",
		"-- +goose Up\n" + long[1:] + "\n-- +goose Down\nSELECT 1;\n",
		"-- +goose Up\n" + long[1:] + "\r\n-- +goose Down\nSELECT 1;\n",
		"-- +goose Down\nSELECT 1;\n" + long + "\n-- +goose Up\n",
		"-- +goose Up\n-- +goose Down\n" + long[1:],
		"-- +goose Up\n-- +goose Down\n" + long,
	} {
		checkAnnotations(t, []byte(s))
	}
}

func FuzzParseAnnotationsMatchesScanner(f *testing.F) {
	for _, s := range annotationSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkAnnotations(t, []byte(s)) })
}

func checkAnnotations(t *testing.T, b []byte) {
	t.Helper()
	got, gotUp := parseAnnotations(b)
	want, wantUp := scannerAnnotations(b)
	if got != want || gotUp != wantUp {
		show := string(b)
		if len(show) > 200 {
			show = show[:100] + "..." + show[len(show)-100:]
		}
		t.Fatalf("%q: parseAnnotations = %+v, up %v; the scanner read %+v, up %v", show, got, gotUp, want, wantUp)
	}
}

func BenchmarkScanDir(b *testing.B) {
	fsys := fstest100()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ScanDir(fsys, "m"); err != nil {
			b.Fatal(err)
		}
	}
}

// fstest100 is a directory of 100 small migrations, like the benchmark's.
func fstest100() fstest.MapFS {
	fsys := fstest.MapFS{}
	for i := 1; i <= 100; i++ {
		fsys[fmt.Sprintf("%05d_m%d.sql", i, i)] = &fstest.MapFile{Data: []byte(mig(
			fmt.Sprintf("CREATE TABLE t%d (id int PRIMARY KEY, v text);\nINSERT INTO t%d VALUES (1, 'x');\n", i, i),
			fmt.Sprintf("DROP TABLE t%d;", i)))}
	}
	return fsys
}
