// Command pause is the sandbox ("pause") image of the local test cluster: a
// tiny static program that holds a pod's namespaces open and exits 0 on
// SIGTERM or SIGINT. It replaces registry.k8s.io/pause, which cannot be pulled
// here. Like the real one it reaps orphans, should a pod share its PID
// namespace.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	child := make(chan os.Signal, 8)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-child:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
