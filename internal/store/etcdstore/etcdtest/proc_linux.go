package etcdtest

import "syscall"

// sysProcAttr has the kernel kill a member if the test process dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
