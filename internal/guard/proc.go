package guard

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Procfs finds the process at the other end of a TCP connection from the
// kernel's socket tables: the socket whose local and remote addresses are
// the caller's and the guard's (asked of the kernel with sock_diag, an exact
// lookup, else found in /proc/net/tcp or tcp6 of the guard's network
// namespace), then the process holding that socket's inode among
// /proc/PID/fd. It needs no eBPF, only the right to read other processes'
// fd directories (root or CAP_SYS_PTRACE). Callers in other network
// namespaces (containers) are not in the tables: Find reports nothing.
type Procfs struct {
	// Root is the proc mount; "" means /proc.
	Root string
}

// Socket is one row of /proc/net/tcp or tcp6.
type Socket struct {
	Local, Remote netip.AddrPort
	State         uint8
	Inode         uint64
}

// ParseNetTCP parses the kernel's /proc/net/tcp or /proc/net/tcp6 table.
// The header line is skipped; any other malformed line is an error naming
// its number.
func ParseNetTCP(r io.Reader) ([]Socket, error) {
	var out []Socket
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		f := strings.Fields(line)
		if n == 1 && len(f) > 0 && f[0] == "sl" {
			continue
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("proc net tcp line %d: %d fields, want at least 10", n, len(f))
		}
		var s Socket
		var err error
		if s.Local, err = parseHexAddrPort(f[1]); err != nil {
			return nil, fmt.Errorf("proc net tcp line %d: local address %q: %w", n, f[1], err)
		}
		if s.Remote, err = parseHexAddrPort(f[2]); err != nil {
			return nil, fmt.Errorf("proc net tcp line %d: remote address %q: %w", n, f[2], err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("proc net tcp line %d: state %q: not a hex byte", n, f[3])
		}
		s.State = uint8(st)
		if s.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
			return nil, fmt.Errorf("proc net tcp line %d: inode %q: not a number", n, f[9])
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("proc net tcp: %w", err)
	}
	return out, nil
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// parseHexAddrPort parses "0100007F:1F90": the address as the kernel prints
// it, 32-bit words in host byte order; the port as a number.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, errors.New("no colon")
	}
	if len(p) != 4 {
		return netip.AddrPort{}, errors.New("port: want 4 hex digits")
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, errors.New("port: not hex")
	}
	if len(a) != 8 && len(a) != 32 {
		return netip.AddrPort{}, errors.New("address: want 8 or 32 hex digits")
	}
	b, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, errors.New("address: not hex")
	}
	if littleEndian {
		for i := 0; i < len(b); i += 4 {
			b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
		}
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

func (p Procfs) root() string {
	if p.Root == "" {
		return "/proc"
	}
	return p.Root
}

// Find describes the process whose socket connects caller to guard:
// "pid 1234 python3 app.py (cgroup /system.slice/app.service)", with the
// container id where the cgroup path holds one.
func (p Procfs) Find(caller, guard netip.AddrPort) (string, bool) {
	if !local(caller.Addr()) {
		// A container's address: its socket is in another namespace's
		// table, and reading this one costs a scan of every socket here.
		return "", false
	}
	inode, ok := uint64(0), false
	if p.Root == "" {
		inode, ok = diagInode(caller, guard)
	}
	if !ok {
		inode = p.inode(caller, guard)
	}
	if inode == 0 {
		return "", false
	}
	pid := p.owner(inode)
	if pid == 0 {
		return "", false
	}
	return p.describe(pid), true
}

// local: a is an address of this network namespace, where a caller's
// socket shows in the tables.
func local(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: look
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if la, ok := netip.AddrFromSlice(n.IP); ok && la.Unmap() == a {
				return true
			}
		}
	}
	return false
}

func (p Procfs) inode(caller, guard netip.AddrPort) uint64 {
	for _, table := range []struct {
		name string
		v6   bool
	}{{"net/tcp", false}, {"net/tcp6", true}} {
		if !table.v6 && (!caller.Addr().Is4() || !guard.Addr().Is4()) {
			continue
		}
		// The row is found as text, so that a table of many thousand rows
		// (a busy host's TIME_WAIT sockets) is not parsed; only that row is.
		key := " " + hexAddrPort(caller, table.v6) + " " + hexAddrPort(guard, table.v6) + " "
		b, err := os.ReadFile(filepath.Join(p.root(), table.name))
		if err != nil {
			continue
		}
		k := []byte(key)
		for off := 0; ; {
			i := bytes.Index(b[off:], k)
			if i < 0 {
				break
			}
			i += off
			start := bytes.LastIndexByte(b[:i], '\n') + 1
			end := bytes.IndexByte(b[i:], '\n')
			if end < 0 {
				end = len(b) - i
			}
			socks, err := ParseNetTCP(bytes.NewReader(b[start : i+end]))
			if err == nil && len(socks) == 1 && socks[0].Inode != 0 {
				return socks[0].Inode
			}
			off = i + len(key)
		}
	}
	return 0
}

// hexAddrPort formats a as the kernel's socket tables do; v6 formats an
// IPv4 address as IPv4-mapped, as tcp6 shows it.
func hexAddrPort(a netip.AddrPort, v6 bool) string {
	var b []byte
	if v6 {
		s := a.Addr().As16()
		b = s[:]
	} else {
		s := a.Addr().As4()
		b = s[:]
	}
	if littleEndian {
		for i := 0; i < len(b); i += 4 {
			b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
		}
	}
	return strings.ToUpper(hex.EncodeToString(b)) + fmt.Sprintf(":%04X", a.Port())
}

// owner finds the process holding socket inode among /proc/PID/fd.
func (p Procfs) owner(inode uint64) int {
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	pids, err := os.ReadDir(p.root())
	if err != nil {
		return 0
	}
	for _, d := range pids {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(p.root(), d.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && l == want {
				return pid
			}
		}
	}
	return 0
}

const maxCmdline = 200

var containerIDRe = regexp.MustCompile(`[0-9a-f]{64}`)

func (p Procfs) describe(pid int) string {
	dir := filepath.Join(p.root(), strconv.Itoa(pid))
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d", pid)
	if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cmd) > 0 {
		c := strings.TrimSpace(strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " "))
		if len(c) > maxCmdline {
			c = c[:maxCmdline] + "…"
		}
		b.WriteString(" " + c)
	}
	if cg, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		path := cgroupPath(string(cg))
		if path != "" && path != "/" {
			b.WriteString(" (cgroup " + path)
			if id := containerIDRe.FindString(path); id != "" {
				b.WriteString(", container " + id[:12])
			}
			b.WriteString(")")
		}
	}
	return b.String()
}

// cgroupPath is the unified (v2) path of /proc/PID/cgroup, else the first
// non-root v1 path.
func cgroupPath(s string) string {
	var first string
	for _, line := range strings.Split(s, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			if parts[2] != "/" {
				return parts[2]
			}
			continue
		}
		if first == "" && parts[2] != "/" {
			first = parts[2]
		}
	}
	return first
}
