package guard

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"
)

// diagInode asks the kernel (NETLINK_SOCK_DIAG, an exact lookup, no table
// dump) for the inode of the TCP socket whose local address is caller and
// whose remote address is guard. ok=false when it cannot tell; then the
// socket tables under /proc are read instead.
func diagInode(caller, guard netip.AddrPort) (inode uint64, ok bool) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	families := []uint8{unix.AF_INET6}
	if caller.Addr().Is4() && guard.Addr().Is4() {
		// An IPv4 connection is an AF_INET socket, or an AF_INET6 one
		// with IPv4-mapped addresses.
		families = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	for _, fam := range families {
		n, err := diagOne(fd, fam, caller, guard)
		if err == nil {
			return n, true
		}
		if !errors.Is(err, unix.ENOENT) {
			return 0, false
		}
	}
	return 0, true // the kernel says: no such socket here
}

const (
	nlmsgHdrLen   = 16
	diagReqLen    = 56 // struct inet_diag_req_v2
	diagInodeOff  = 68 // offset of idiag_inode in struct inet_diag_msg
	diagMsgMinLen = diagInodeOff + 4
)

var errDiag = errors.New("sock_diag: malformed answer")

func diagOne(fd int, family uint8, caller, guard netip.AddrPort) (uint64, error) {
	b := make([]byte, nlmsgHdrLen+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], 1)
	r := b[nlmsgHdrLen:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], caller.Port())
	binary.BigEndian.PutUint16(id[2:], guard.Port())
	putDiagAddr(id[4:20], family, caller.Addr())
	putDiagAddr(id[20:36], family, guard.Addr())
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, err
	}
	buf = buf[:n]
	if len(buf) < nlmsgHdrLen {
		return 0, errDiag
	}
	switch ne.Uint16(buf[4:]) {
	case unix.NLMSG_ERROR:
		if len(buf) < nlmsgHdrLen+4 {
			return 0, errDiag
		}
		if code := int32(ne.Uint32(buf[nlmsgHdrLen:])); code < 0 {
			return 0, unix.Errno(-code)
		}
		return 0, errDiag
	case unix.SOCK_DIAG_BY_FAMILY:
		msg := buf[nlmsgHdrLen:]
		if len(msg) < diagMsgMinLen {
			return 0, errDiag
		}
		return uint64(ne.Uint32(msg[diagInodeOff:])), nil
	}
	return 0, errDiag
}

// putDiagAddr writes a in network byte order as inet_diag_sockid holds it:
// 4 bytes for AF_INET, 16 (IPv4-mapped for an IPv4 address) for AF_INET6.
func putDiagAddr(dst []byte, family uint8, a netip.Addr) {
	if family == unix.AF_INET {
		v := a.As4()
		copy(dst, v[:])
		return
	}
	v := a.As16()
	copy(dst, v[:])
}
