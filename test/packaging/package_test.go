// Package packaging tests scripts/package and what it builds: the same
// commit gives the same bytes, the .deb installs into a clean root and its
// unit verifies, the binaries are static, and the container image holds
// what packaging/Containerfile says.
package packaging

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imds/imds/internal/testenv"
)

// run runs name with args in dir and returns its standard output; it fails
// the test with the combined output on error.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// clone checks out the commit of the module under test in a new directory.
func clone(t *testing.T, root, commit string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	run(t, "", nil, "git", "clone", "-q", "--no-checkout", root, dir)
	run(t, dir, nil, "git", "-c", "advice.detachedHead=false", "checkout", "-q", commit)
	return dir
}

func sums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPackage builds the committed HEAD twice, from two checkouts at
// different paths, and checks what comes out. Uncommitted changes are not
// packaged.
func TestPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds release artefacts")
	}
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "needs root: dpkg --root, chroot and a mount namespace")
	}
	for _, c := range []string{"git", "go", "dpkg-deb", "dpkg", "dpkg-query", "tar", "gzip", "sha256sum", "systemd-analyze", "unshare"} {
		testenv.Command(t, c)
	}
	root, err := testenv.ModuleRoot()
	testenv.Need(t, "module root", err)
	commit := strings.TrimSpace(run(t, root, nil, "git", "rev-parse", "HEAD"))
	a, b := clone(t, root, commit), clone(t, root, commit)
	version := strings.TrimSpace(run(t, a, nil, "git", "describe", "--tags", "--always", "--dirty"))
	epoch, _ := strconv.ParseInt(strings.TrimSpace(run(t, a, nil, "git", "log", "-1", "--format=%ct")), 10, 64)

	distA, distB := filepath.Join(t.TempDir(), "dist"), filepath.Join(t.TempDir(), "dist")
	// The second build is of one architecture only, to keep the test short;
	// both run at once.
	errs := make(chan error, 1)
	go func() {
		cmd := exec.CommandContext(t.Context(), filepath.Join(b, "scripts/package"))
		cmd.Dir, cmd.Env = b, append(os.Environ(), "DIST="+distB, "ARCHES=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			errs <- fmt.Errorf("scripts/package in the second checkout: %v\n%s", err, out)
			return
		}
		errs <- nil
	}()
	run(t, a, []string{"DIST=" + distA}, filepath.Join(a, "scripts/package"))
	if err := <-errs; err != nil {
		t.Fatal(err)
	}

	sumA, sumB := sums(t, distA), sums(t, distB)
	debName := func(arch string) string {
		for name := range sumA {
			if strings.HasPrefix(name, "imds_") && strings.HasSuffix(name, "_"+arch+".deb") {
				return name
			}
		}
		t.Fatalf("no .deb for %s in %v", arch, sumA)
		return ""
	}
	tarName := func(arch string) string { return "imds-" + version + "-linux-" + arch + ".tar.gz" }

	t.Run("reproducible", func(t *testing.T) {
		for _, name := range []string{debName("amd64"), tarName("amd64"), "linux-amd64/imds"} {
			if sumA[name] == "" || sumA[name] != sumB[name] {
				t.Errorf("%s: sha256 %s from one checkout, %s from the other", name, sumA[name], sumB[name])
			}
		}
		t.Logf("amd64 .deb sha256 %s in both builds", sumA[debName("amd64")])
	})

	t.Run("binaries", func(t *testing.T) {
		for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
			f, err := elf.Open(filepath.Join(distA, "linux-"+arch, "imds"))
			if err != nil {
				t.Fatalf("%s: %v", arch, err)
			}
			if f.Machine != machine {
				t.Errorf("%s: machine %v, want %v", arch, f.Machine, machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("%s: dynamically linked (%v), want static", arch, p.Type)
				}
			}
			f.Close()
			if got := strings.TrimSpace(run(t, "", nil, "dpkg-deb", "--field", filepath.Join(distA, debName(arch)), "Architecture")); got != arch {
				t.Errorf("%s: .deb Architecture %q", arch, got)
			}
		}
	})

	t.Run("tarball", func(t *testing.T) {
		out := run(t, "", nil, "tar", "--utc", "-tvzf", filepath.Join(distA, tarName("arm64")))
		stamp := time.Unix(epoch, 0).UTC().Format("2006-01-02 15:04")
		for _, want := range []string{"imds", "imds.service", "fleet.yaml", "README.md", "deploy.md"} {
			re := regexp.MustCompile(`(?m)^-\S+ 0/0 .* ` + regexp.QuoteMeta(stamp) + ` imds-` + regexp.QuoteMeta(version) + `-linux-arm64/` + regexp.QuoteMeta(want) + `$`)
			if !re.MatchString(out) {
				t.Errorf("tarball lacks %s owned by 0/0 at %s:\n%s", want, stamp, out)
			}
		}
	})

	t.Run("deb", func(t *testing.T) {
		deb := filepath.Join(distA, debName("amd64"))
		// A clean root: nothing but dpkg's empty database.
		croot := t.TempDir()
		admin := filepath.Join(croot, "var/lib/dpkg")
		for _, d := range []string{"info", "updates"} {
			os.MkdirAll(filepath.Join(admin, d), 0o755)
		}
		for _, f := range []string{"status", "available"} {
			os.WriteFile(filepath.Join(admin, f), nil, 0o644)
		}
		run(t, "", nil, "dpkg", "--root="+croot, "-i", deb)
		st := run(t, "", nil, "dpkg-query", "--admindir="+admin, "-W", "-f=${Status}|${Conffiles}", "imds")
		if !strings.HasPrefix(st, "install ok installed|") || !strings.Contains(st, "/etc/imds/fleet.yaml ") {
			t.Errorf("dpkg status: got %q, want installed with /etc/imds/fleet.yaml as a conffile", st)
		}
		for path, mode := range map[string]os.FileMode{
			"usr/bin/imds": 0o755, "usr/lib/systemd/system/imds.service": 0o644, "etc/imds/fleet.yaml": 0o644,
		} {
			fi, err := os.Stat(filepath.Join(croot, path))
			if err != nil || fi.Mode().Perm() != mode {
				t.Errorf("/%s: %v, %v; want mode %v", path, fi.Mode(), err, mode)
			}
		}
		// Nothing else: no user, no enabled unit, no maintainer script.
		for _, p := range []string{"etc/passwd", "etc/systemd", "var/lib/dpkg/info/imds.postinst"} {
			if _, err := os.Stat(filepath.Join(croot, p)); err == nil {
				t.Errorf("/%s exists after install", p)
			}
		}
		// The installed binary runs in the clean root: it is static.
		got := run(t, "", nil, "chroot", croot, "/usr/bin/imds", "version")
		if want := "imds " + version + " linux/amd64 "; !strings.HasPrefix(got, want) {
			t.Errorf("installed imds version: got %q, want %q…", got, want)
		}
		if v := run(t, "", nil, "chroot", croot, "/usr/bin/imds", "--version"); v != got {
			t.Errorf("--version %q differs from version %q", v, got)
		}
		run(t, "", nil, "chroot", croot, "/usr/bin/imds", "validate", "--config", "/etc/imds/fleet.yaml")

		// systemd-analyze verify on this machine's system with the package's
		// /usr on top (a private mount namespace), so that the unit finds
		// /usr/bin/imds as installed, and ip and kill as Debian has them.
		unit := "/usr/lib/systemd/system/imds.service"
		verify := func(usr string) (string, error) {
			script := `mount -t overlay overlay -o lowerdir="$1":/usr /usr && exec systemd-analyze verify "$2"`
			out, err := exec.CommandContext(t.Context(), "unshare", "-m", "sh", "-c", script, "sh", usr, unit).CombinedOutput()
			return string(out), err
		}
		if out, err := verify(filepath.Join(croot, "usr")); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// The check has teeth: a unit whose program is missing fails it.
		broken := filepath.Join(t.TempDir(), "usr")
		os.MkdirAll(filepath.Join(broken, "lib/systemd/system"), 0o755)
		data, _ := os.ReadFile(filepath.Join(croot, unit))
		os.WriteFile(filepath.Join(broken, unit[len("/usr/"):]), bytes.ReplaceAll(data, []byte("/usr/bin/imds"), []byte("/usr/bin/imds-missing")), 0o644)
		if out, err := verify(broken); err == nil {
			t.Errorf("systemd-analyze verify passed a unit with a missing program:\n%s", out)
		}

		out, _ := exec.CommandContext(t.Context(), "systemd-analyze", "security", "--offline=yes", filepath.Join(croot, unit)).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for imds.service: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			testenv.SkipOrFail(t, "systemd-analyze security --offline=yes gave no score (systemd older than 250?):\n%s", out)
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("systemd-analyze security: exposure %.1f", score)
		if score > 2.0 {
			t.Errorf("exposure %.1f, want at most 2.0 (docs/deploy.md explains each exception):\n%s", score, out)
		}
	})

	t.Run("container", func(t *testing.T) {
		testContainer(t, distA, version)
	})
}

// testContainer builds packaging/Containerfile with buildah (no daemon; vfs
// storage in a temporary directory, no registry: the base is scratch),
// checks the image's configuration and files, and runs its binary in the
// image's root as the image's user.
func testContainer(t *testing.T, dist, version string) {
	buildah := testenv.Command(t, "buildah")
	storage := t.TempDir()
	bah := func(args ...string) string {
		t.Helper()
		return run(t, "", nil, buildah, append([]string{"--root", filepath.Join(storage, "root"),
			"--runroot", filepath.Join(storage, "run"), "--storage-driver", "vfs"}, args...)...)
	}
	root, _ := testenv.ModuleRoot()
	bah("build", "--quiet", "-f", filepath.Join(root, "packaging/Containerfile"), "--platform", "linux/amd64", "-t", "imds:test", dist)
	cfg := bah("inspect", "--type", "image", "--format",
		"{{.OCIv1.Config.User}}|{{range $k, $v := .OCIv1.Config.Volumes}}{{$k}}{{end}}|{{.OCIv1.Config.Entrypoint}}|{{.OCIv1.Architecture}}|{{len .OCIv1.RootFS.DiffIDs}}", "imds:test")
	if want := "65532:65532|/var/lib/imds|[/usr/bin/imds]|amd64|1"; strings.TrimSpace(cfg) != want {
		t.Errorf("image config: got %q, want %q (user|volumes|entrypoint|arch|layers: one, on scratch)", strings.TrimSpace(cfg), want)
	}
	// --platform picks the binary through TARGETARCH.
	bah("build", "--quiet", "-f", filepath.Join(root, "packaging/Containerfile"), "--platform", "linux/arm64", "-t", "imds:test-arm64", dist)
	if got := strings.TrimSpace(bah("inspect", "--type", "image", "--format", "{{.OCIv1.Architecture}}", "imds:test-arm64")); got != "arm64" {
		t.Errorf("arm64 image: architecture %q", got)
	}
	armCtr := strings.TrimSpace(bah("from", "imds:test-arm64"))
	armMnt := strings.TrimSpace(bah("mount", armCtr))
	if f, err := elf.Open(filepath.Join(armMnt, "usr/bin/imds")); err != nil || f.Machine != elf.EM_AARCH64 {
		t.Errorf("arm64 image: /usr/bin/imds is not an arm64 binary: %v", err)
	} else {
		f.Close()
	}
	bah("umount", armCtr)
	bah("rm", armCtr)

	ctr := strings.TrimSpace(bah("from", "imds:test"))
	mnt := strings.TrimSpace(bah("mount", ctr))
	t.Cleanup(func() {
		// t.Context has ended by now.
		for _, args := range [][]string{{"umount", ctr}, {"rm", ctr}} {
			exec.Command(buildah, append([]string{"--root", filepath.Join(storage, "root"),
				"--runroot", filepath.Join(storage, "run"), "--storage-driver", "vfs"}, args...)...).Run()
		}
	})

	var files []string
	filepath.WalkDir(mnt, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(mnt, p)
			files = append(files, "/"+rel)
		}
		return err
	})
	if got, want := strings.Join(files, " "), "/etc/imds/fleet.yaml /etc/ssl/certs/ca-certificates.crt /usr/bin/imds"; got != want {
		t.Errorf("image files: got %s, want %s", got, want)
	}
	// COPY makes the directory 0755 (--chmod does not reach it); imds
	// writes what is secret in it 0600 (checked below).
	if fi, err := os.Stat(filepath.Join(mnt, "var/lib/imds")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65532 || fi.Mode().Perm() != 0o755 {
		t.Errorf("/var/lib/imds: %v; want a directory of 65532, mode 0755", err)
	}

	// The image's root has nothing but these files: run the binary there as
	// user 65532, as a container engine would (without its namespaces).
	inImage := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(t.Context(), "/usr/bin/imds", args...)
		cmd.Err = nil // the path is the image's, not this machine's
		cmd.Dir = "/"
		cmd.Env = []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: mnt, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		return cmd
	}
	out, err := inImage("version").CombinedOutput()
	if want := "imds " + version + " linux/amd64 "; err != nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("imds version in the image: %q, %v; want %q…", out, err, want)
	}
	if out, err := inImage("validate", "--config", "/etc/imds/fleet.yaml").CombinedOutput(); err != nil {
		t.Errorf("imds validate in the image: %v\n%s", err, out)
	}
	// Serve the demo instance from the image's state directory.
	addr := make(chan string, 1)
	p, err := testenv.Start(inImage("serve", "--data-dir", "/var/lib/imds", "--listen", "127.0.0.1:0", "--admin-listen", ""), func(line string) {
		if l, ok := testenv.ParseListening(line); ok && !l.Admin {
			addr <- l.Addr
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(t)
	var a string
	select {
	case a = <-addr:
	case <-p.Done():
		t.Fatalf("imds serve in the image exited: %v\n%s", p.Err(), p.Log())
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	res, err := http.Get("http://" + a + "/latest/meta-data/instance-id")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "i-0123456789abcdef0" {
		t.Errorf("instance-id from imds in the image: %d %q", res.StatusCode, body)
	}
	for _, f := range []string{"imds.db", "credentials", "identity-key.pem"} {
		fi, err := os.Stat(filepath.Join(mnt, "var/lib/imds", f))
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 65532 {
			t.Errorf("/var/lib/imds/%s: %v; want a file of 65532, mode 0600", f, err)
		}
	}
}
