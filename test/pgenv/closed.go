package pgenv

import (
	"net"
	"strconv"
	"testing"
)

// ClosedPort is a port of 127.0.0.1 that was free a moment ago and that
// nothing listens on: where a server that is down would be.
func ClosedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ClosedURL is the URL of a PostgreSQL server that is down: user app,
// password pw and database app on 127.0.0.1:ClosedPort.
func ClosedURL(t testing.TB) string {
	t.Helper()
	return "postgres://app:pw@127.0.0.1:" + strconv.Itoa(ClosedPort(t)) + "/app?sslmode=disable"
}
