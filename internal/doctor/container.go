package doctor

import (
	"strings"
)

// detectContainer looks for the usual signs that doctor runs in a
// container, where the token answer has one more hop to go: the marker
// files of Docker (/.dockerenv) and Podman (/run/.containerenv), a container
// runtime named in /proc/1/cgroup (cgroup v1), a Kubernetes pod's service
// variables, and last a network namespace other than PID 1's (which is how
// a process started with `ip netns exec` or a sandbox sees it; a container's
// own PID 1 shares its namespace, so this needs the host's PID 1).
func detectContainer(o *Options) Container {
	for _, m := range []struct{ path, what string }{
		{"/.dockerenv", "/.dockerenv: Docker"},
		{"/run/.containerenv", "/run/.containerenv: Podman"},
	} {
		if _, err := o.ReadFile(m.path); err == nil {
			return Container{true, m.what}
		}
	}
	if b, err := o.ReadFile("/proc/1/cgroup"); err == nil {
		for _, rt := range []string{"docker", "kubepods", "containerd", "libpod", "lxc", "ecs"} {
			if strings.Contains(string(b), rt) {
				return Container{true, "/proc/1/cgroup names " + rt}
			}
		}
	}
	if o.getenv("KUBERNETES_SERVICE_HOST") != "" {
		return Container{true, "KUBERNETES_SERVICE_HOST: a Kubernetes pod"}
	}
	self, err1 := o.Readlink("/proc/self/ns/net")
	init, err2 := o.Readlink("/proc/1/ns/net")
	if err1 == nil && err2 == nil && self != init {
		return Container{true, "a network namespace other than PID 1's"}
	}
	return Container{}
}
