package config

import (
	"strings"
	"testing"
)

const guardBase = `roles:
  app:
    static: {access-key-id: AKIAEXAMPLE, secret-access-key: secret}
guard:
  hop-limit: 2
  callers:
    - name: a
      match: [10.0.0.2, 10.0.1.0/24]
      imdsv1: upgrade
      role: app
      deny-paths: [user-data, iam/]
`

func TestGuardLoads(t *testing.T) {
	c, err := Parse([]byte(guardBase))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Guard
	if g.Upstream != DefaultGuardUpstream || g.Default.IMDSv1 != V1Upgrade {
		t.Errorf("defaults not filled: %+v", g)
	}
	ps := g.Callers[0].Prefixes()
	if len(ps) != 2 || ps[0].String() != "10.0.0.2/32" || ps[1].String() != "10.0.1.0/24" {
		t.Errorf("prefixes %v", ps)
	}
}

func TestGuardInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"policy", guardBase + "      imdsv1: sometimes\n", nil}, // duplicate key: a YAML error
		{"bad policy", strings.Replace(guardBase, "imdsv1: upgrade", "imdsv1: sometimes", 1),
			[]string{"line 9", "guard.callers[0].imdsv1", `"sometimes"`, "want upgrade, allow or refuse"}},
		{"unknown role", strings.Replace(guardBase, "role: app", "role: nope", 1),
			[]string{"line 10", "guard.callers[0].role", `"nope"`, "no such role"}},
		{"bad match", strings.Replace(guardBase, "10.0.0.2,", "10.0.0.300,", 1),
			[]string{"guard.callers[0].match[0]", `"10.0.0.300"`, "not an address or CIDR"}},
		{"hop limit", strings.Replace(guardBase, "hop-limit: 2", "hop-limit: 65", 1),
			[]string{"line 5", "guard.hop-limit", "want 1 to 64"}},
		{"upstream", guardBase + "  upstream: https://example.com/x\n",
			[]string{"guard.upstream", "want an http URL"}},
		{"deny path", strings.Replace(guardBase, "user-data,", "/latest/user-data,", 1),
			[]string{"guard.callers[0].deny-paths[0]", "no leading slash"}},
		{"role and host", guardBase + "      host-credentials: true\n",
			[]string{"guard.callers[0].host-credentials", "never gets the host's"}},
		{"no name", guardBase + "    - match: [10.0.0.9]\n",
			[]string{"guard.callers[1].name", "required"}},
		{"duplicate name", guardBase + "    - name: a\n      match: [10.0.0.9]\n",
			[]string{"guard.callers[1].name", "duplicate"}},
		{"unknown key", guardBase + "  defualt: {}\n", []string{"defualt"}},
		{"source credentials", strings.Replace(guardBase, "static: {access-key-id: AKIAEXAMPLE, secret-access-key: secret}",
			"assume-role: {role-arn: \"arn:aws:iam::123456789012:role/app\", source-credentials: host}", 1),
			[]string{"line 3", "roles.app.assume-role.source-credentials", `"host"`, "want one of upstream"}},
		{"source credentials and profile", strings.Replace(guardBase, "static: {access-key-id: AKIAEXAMPLE, secret-access-key: secret}",
			"assume-role: {role-arn: \"arn:aws:iam::123456789012:role/app\", source-credentials: upstream, source-profile: p}", 1),
			[]string{"roles.app.assume-role.source-credentials", "exclude each other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
