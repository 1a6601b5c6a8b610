package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// Moto is a running `python -m moto.server`: STS, among others, on loopback.
type Moto struct {
	URL  string // http://127.0.0.1:PORT
	proc *Proc
}

// StartMoto starts moto's server with python (see Python) on a free
// loopback port and waits until it answers. It is killed when the test ends.
func StartMoto(t testing.TB, python string) *Moto {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	m := &Moto{URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	m.proc, err = Start(exec.Command(python, "-m", "moto.server", "-H", "127.0.0.1", "-p", fmt.Sprint(port)), nil)
	if err != nil {
		t.Fatalf("start moto: %v", err)
	}
	t.Cleanup(m.Stop)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := http.Get(m.URL + "/moto-api/"); err == nil {
			resp.Body.Close()
			return m
		}
		select {
		case <-m.proc.Done():
			t.Fatalf("moto exited:\n%s", m.proc.Log())
		case <-ctx.Done():
			t.Fatalf("moto does not answer on %s:\n%s", m.URL, m.proc.Log())
		case <-tick.C:
		}
	}
}

// Stop kills moto and waits until it has exited.
func (m *Moto) Stop() {
	if m.proc.Running() {
		m.proc.Kill()
	}
}
