package server

import "syscall"

var errAddrNotAvail = syscall.EADDRNOTAVAIL
