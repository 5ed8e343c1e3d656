package pdeath

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

var (
	once sync.Once
	reqs chan func()
)

// Start starts cmd so that the kernel sends it sig when this process dies.
// It keeps cmd's other SysProcAttr fields (credentials, process group).
func Start(cmd *exec.Cmd, sig syscall.Signal) error {
	once.Do(func() {
		reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for f := range reqs {
				f()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	done := make(chan error, 1)
	reqs <- func() { done <- cmd.Start() }
	return <-done
}
