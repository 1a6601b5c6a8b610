package config

// Role is a role credential source. Exactly one source is set.
type Role struct {
	Static *StaticSource `yaml:"static"`
	// InstanceProfileID is served in iam/info; derived from the role name if empty.
	InstanceProfileID string `yaml:"instance-profile-id"`
}

// StaticSource serves fixed keys: the simplest source, for development and for
// keys managed elsewhere.
type StaticSource struct {
	AccessKeyID     string `yaml:"access-key-id"`
	SecretAccessKey string `yaml:"secret-access-key"`
	SessionToken    string `yaml:"session-token"`
}

// roles checks the role sources.
func (v *validator) roles(roles map[string]*Role) {
	for name, r := range roles {
		p := "roles." + name
		if !roleNameRe.MatchString(name) {
			v.add(p, name, "a role name has 1 to 64 characters from [A-Za-z0-9+=,.@_-]")
		}
		if r == nil || r.Static == nil {
			v.add(p, "", "a source is needed (static)")
			continue
		}
		if r.Static.AccessKeyID == "" {
			v.add(p+".static.access-key-id", "", "required")
		}
		if r.Static.SecretAccessKey == "" {
			v.add(p+".static.secret-access-key", "", "required")
		}
	}
}
