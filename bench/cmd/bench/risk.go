package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// Section 7: what the lock-impact analysis of pending statements (pkg/sqlrisk)
// costs a plan. Its SQL parser is libpg_query compiled to WebAssembly, which
// wazero compiles when the first statement is analysed: a plan with nothing
// pending must not pay for it, one with something pending pays it once.

type riskResult struct {
	n      int
	series []*series // nothing pending, 1 pending, 1 pending under a 128Mi and a 320Mi pod's GOMEMLIMIT, n pending
}

func sectionRisk(ctx context.Context, c *config, srv *pgenv.Server, rep *report) error {
	n := c.history
	logf("section 7: migrate --plan with nothing pending, 1 pending and %d pending (the risk analysis), %d runs each", n, c.runs1)
	hist := filepath.Join(c.work, "risk-history")
	if err := writeGoose(hist, n); err != nil {
		return err
	}
	one := filepath.Join(c.work, "risk-one")
	if err := writeGoose(one, n); err != nil {
		return err
	}
	risky := "-- +goose Up\nCREATE INDEX bench_big_g ON bench_big (g);\n-- +goose Down\nDROP INDEX bench_big_g;\n"
	if err := os.WriteFile(filepath.Join(one, fmt.Sprintf("%05d_index.sql", n+1)), []byte(risky), 0o644); err != nil {
		return err
	}
	dbA, err := srv.CreateDatabase(ctx, "bench_risk_applied")
	if err != nil {
		return err
	}
	dbE, err := srv.CreateDatabase(ctx, "bench_risk_empty")
	if err != nil {
		return err
	}
	defer func() { _ = srv.DropDatabase(ctx, dbA); _ = srv.DropDatabase(ctx, dbE) }()
	if err := srv.Exec(ctx, dbA, "CREATE TABLE bench_big AS SELECT g FROM generate_series(1, 100000) g"); err != nil {
		return err
	}
	urlA, urlE := srv.URL(dbA), srv.URL(dbE)
	if _, err := runOnce(ctx, []command{{argv: []string{c.bin("migrate"), "--dir", hist}, env: c.stepEnv(urlA)}}, false); err != nil {
		return err
	}
	plan := func(dir, url string, extra ...string) func(string) []command {
		return func(string) []command {
			return []command{{argv: []string{c.bin("migrate"), "--plan", "--dir", dir}, env: append(c.stepEnv(url), extra...)}}
		}
	}
	tools := []tool{
		{fmt.Sprintf("nothing pending (%d applied)", n), plan(hist, urlA)},
		{"1 pending (CREATE INDEX on 100,000 rows)", plan(one, urlA)},
		{"1 pending, GOMEMLIMIT of a 128Mi pod (not analysed)", plan(one, urlA, podGoMemLimit(128<<20))},
		{"1 pending, GOMEMLIMIT of a 320Mi pod", plan(one, urlA, podGoMemLimit(sqlrisk.ParserMemory))},
		{fmt.Sprintf("%d pending (empty database)", n), plan(hist, urlE)},
	}
	res, err := interleave(ctx, tools, c.runs1, true, false, 3, nil)
	if err != nil {
		return err
	}
	rep.risk = &riskResult{n: n, series: res}
	return nil
}

func (r *report) riskTable(b *strings.Builder, s *riskResult) {
	fmt.Fprintf(b, "\n7. Risk analysis of pending statements (migrate --plan) — %d runs per case, interleaved\n", len(s.series[0].samples))
	nothing := s.series[0]
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   case\twall\t\tpeak RSS\tvs nothing pending\n")
	for _, x := range s.series {
		fmt.Fprintf(tw, "   %s\t%s\t[%s]\t%s\t%+.0f ms\n", x.name, ms(x.median()), spread(x.walls()), mib(x.peakAll()),
			float64(x.median()-nothing.median())/1e6)
	}
	tw.Flush()
	one, many := s.series[1], s.series[4]
	fmt.Fprintf(b, "   parser start and one statement (1 pending − nothing pending): %s; %d pending − 1 pending (%d more CREATE TABLEs analysed, INSERTs are not): %+.0f ms\n",
		ms(one.median()-nothing.median()), s.n, s.n-1, float64(many.median()-one.median())/1e6)
	fmt.Fprintf(b, "   targets: nothing pending pays no parser start (under a tenth of 1 pending): %s against %s %s; a %s pod holds the analysis: peak %s %s\n",
		ms(nothing.median()), ms(one.median()), verdict(nothing.median()*10 < one.median()),
		mib(sqlrisk.ParserMemory/1024), mib(s.series[3].peakAll()), verdict(s.series[3].peakAll()*1024 < sqlrisk.ParserMemory))
}
