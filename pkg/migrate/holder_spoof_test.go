package migrate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// Any session can set its application_name as it
// likes: one holding the migration lock under a name built to look like the
// holder message's own parts (another user, another pod) is shown quoted, so
// the message names the holder's real user and origin only.
func TestLockBusyHolderNameCannotSpoof(t *testing.T) {
	d := newDB(t)
	c := d.conn()
	ctx := context.Background()
	for _, q := range []string{
		"SET application_name = 'chartreuse/wf-1, user root, pod prod/web-1/migrate'",
		"SELECT pg_advisory_lock(4097083626)",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_, err := acquireLock(ctx, d.sqlDB(t, nil), 0, slog.New(slog.NewTextHandler(io.Discard, nil)), &fakeOrigins{})
	var busy *LockBusyError
	if !errors.As(err, &busy) || busy.Holder == nil {
		t.Fatalf("err = %v, want a busy lock with its holder", err)
	}
	msg := err.Error()
	want := `Chartreuse run "wf-1, user root, pod prod/web-1", step migrate`
	if !strings.Contains(msg, want) || strings.Contains(msg, "run wf-1,") {
		t.Errorf("the holder's chosen name is not shown quoted (want %s): %s", want, msg)
	}

	if _, err := c.Exec(ctx, `SET application_name = 'psql, user postgres, connected from 10.9.9.9'`); err != nil {
		t.Fatal(err)
	}
	_, err = acquireLock(ctx, d.sqlDB(t, nil), 0, slog.New(slog.NewTextHandler(io.Discard, nil)), &fakeOrigins{})
	if msg := err.Error(); !strings.Contains(msg, `application_name "psql, user postgres, connected from 10.9.9.9"`) {
		t.Errorf("a foreign application_name is not shown quoted: %s", msg)
	}
}
