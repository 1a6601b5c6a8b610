package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Func is Go code that a test runs inside a namespace. It runs in a child
// copy of the test binary (started by StartFunc or RunFunc), so the test
// process never changes namespace. args are the arguments given to StartFunc.
type Func func(args []string) error

// funcEnv names the Func that a child copy of the test binary runs.
const funcEnv = "IMDST_NETNS_FUNC"

// Main runs the Func that StartFunc or RunFunc asked for and exits, when this
// process is such a child; otherwise it returns at once. Call it first in
// TestMain, with every Func the package's tests use:
//
//	func TestMain(m *testing.M) {
//		netns.Main(map[string]netns.Func{"echo-server": echoServer})
//		os.Exit(m.Run())
//	}
func Main(funcs map[string]Func) {
	name, ok := os.LookupEnv(funcEnv)
	if !ok {
		return
	}
	fn := funcs[name]
	if fn == nil {
		fmt.Fprintf(os.Stderr, "netns: no Func %q registered in TestMain\n", name)
		os.Exit(2)
	}
	if err := fn(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "netns: %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// StartFunc starts the Func registered as name in Main inside the namespace
// and stops it when the test ends.
func (ns *Namespace) StartFunc(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	return ns.start(t, ns.funcCommand(t, context.Background(), name, args))
}

// RunFunc runs the Func registered as name in Main inside the namespace until
// it returns; ExitCode is 0 when it returned nil.
func (ns *Namespace) RunFunc(t testing.TB, name string, args ...string) Result {
	t.Helper()
	return ns.run(t, ns.funcCommand(t, t.Context(), name, args))
}

func (ns *Namespace) funcCommand(t testing.TB, ctx context.Context, name string, args []string) *exec.Cmd {
	t.Helper()
	// Resolve the binary here: inside `ip netns exec`, /proc/self/exe is ip.
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("test binary: %v", err)
	}
	cmd := ns.Command(ctx, exe, args...)
	cmd.Env = append(os.Environ(), funcEnv+"="+name)
	return cmd
}
