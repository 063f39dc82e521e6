// Command pause is the infrastructure container of every Pod in the lab: it holds the Pod's
// namespaces open, and as PID 1 of a Pod that shares its PID namespace it reaps the orphans the
// other containers leave. It is ours rather than Kubernetes' C pause so the image builds from
// source with the Go toolchain alone. It uses the standard library only: test/images builds it
// in a throwaway module.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause (fairlead test/images)")
		return
	}
	// Signals to a PID namespace's init are dropped unless it handles them, so without these
	// handlers the runtime could stop a Pod only with SIGKILL.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

// reap collects every child that has exited. Signals coalesce, so one SIGCHLD may stand for
// several exits: loop until none is left.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
